package scenario

import (
	"embed"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"gopkg.in/yaml.v3"
)

// Scenario is one lab: hosts, workloads and traffic.
type Scenario struct {
	// Name is a short identifier ("shop").
	Name        string  `yaml:"name"`
	Description string  `yaml:"description"`
	Network     Network `yaml:"network"`
	Hosts       []Host  `yaml:"hosts"`
	// Workloads are the endpoints, each in its own namespace behind a host.
	Workloads []Workload `yaml:"workloads"`
	// Traffic are the clients: what each workload does to others.
	Traffic []Traffic `yaml:"traffic"`

	file     string
	root     *yaml.Node
	loopback bool // tests: workloads on 127.0.0.0/8
}

// Network holds the lab's address plan and name service. The lab never
// routes anything outside its namespaces: these prefixes exist only there.
type Network struct {
	// IPv4 is the prefix of every workload's IPv4 address, e.g.
	// 10.77.0.0/16; it must be private (RFC 1918).
	IPv4 string `yaml:"ipv4"`
	// IPv6 is the prefix of workloads' IPv6 addresses, e.g. fd00:77::/48;
	// it must be unique local (fc00::/7). Optional.
	IPv6 string `yaml:"ipv6"`
	// Domain, if set, gives every workload the name WORKLOAD.DOMAIN (A and
	// AAAA) in the DNS server's zone of that name.
	Domain string `yaml:"domain"`
	// DNS is the workload whose dns app is every application's resolver.
	DNS string `yaml:"dns"`
}

// Host is a hypervisor: a namespace that forwards its workloads' traffic.
type Host struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

// Workload is one endpoint: a VM or container in the data center.
type Workload struct {
	Name        string `yaml:"name"`
	Host        string `yaml:"host"`
	Description string `yaml:"description"`
	IPv4        string `yaml:"ipv4"`
	IPv6        string `yaml:"ipv6"`
	// OS is an inventory fact ("debian-12", "windows-server-2022").
	OS string `yaml:"os"`
	// Tags are what a CMDB says (app, tier, env); empty for a workload the
	// CMDB does not know.
	Tags map[string]string `yaml:"tags"`
	// Truth is what the workload really is (app, tier, env) when its tags
	// are missing or wrong: what discovery should propose. Never given to
	// the product; tests compare its proposals with it.
	Truth map[string]string `yaml:"truth"`
	// Apps are the servers the workload runs.
	Apps []Server `yaml:"apps"`
}

// Server is one server application of a workload: exactly one of the
// fields below is set; its key is the application's name.
type Server struct {
	// Name tells two apps of the same kind apart ("legacy"); default the
	// application's name.
	Name  string            `yaml:"name"`
	HTTP  *apps.HTTPConfig  `yaml:"http"`
	HTTPS *apps.HTTPSConfig `yaml:"https"`
	API   *apps.APIConfig   `yaml:"api"`
	DB    *apps.DBConfig    `yaml:"db"`
	Cache *apps.CacheConfig `yaml:"cache"`
	DNS   *apps.DNSConfig   `yaml:"dns"`
	SSH   *apps.SSHConfig   `yaml:"ssh"`
	LDAP  *apps.LDAPConfig  `yaml:"ldap"`
}

// Traffic is one client application running in workload From: exactly one
// of the application fields is set; its key is the application's name.
type Traffic struct {
	// Name identifies the pattern in logs; default FROM-APP[-N].
	Name        string                  `yaml:"name"`
	From        string                  `yaml:"from"`
	Description string                  `yaml:"description"`
	Shopper     *apps.ShopperConfig     `yaml:"shopper"`
	APICaller   *apps.APICallerConfig   `yaml:"api-caller"`
	TLSClient   *apps.TLSClientConfig   `yaml:"tls-client"`
	SSHAdmin    *apps.SSHAdminConfig    `yaml:"ssh-admin"`
	RDSH        *apps.RDSHConfig        `yaml:"rdsh"`
	DNSClient   *apps.DNSClientConfig   `yaml:"dns-client"`
	DBClient    *apps.DBClientConfig    `yaml:"db-client"`
	CacheClient *apps.CacheClientConfig `yaml:"cache-client"`
	LDAPClient  *apps.LDAPClientConfig  `yaml:"ldap-client"`
	Attacker    *apps.AttackerConfig    `yaml:"attacker"`
	Exploit     *apps.ExploitConfig     `yaml:"exploit"`
}

// appOf returns the one application set in a Server or Traffic (a pointer
// to a struct), its name (the YAML key) and how many were set.
func appOf(v any) (name string, cfg apps.Config, n int) {
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rv.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		c, ok := f.Interface().(apps.Config)
		if !ok {
			continue
		}
		n++
		if n == 1 {
			name, cfg = yamlKey(rt.Field(i)), c
		}
	}
	return name, cfg, n
}

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if k == "" {
		return strings.ToLower(f.Name)
	}
	return k
}

// App returns the server's application name and configuration.
func (s *Server) App() (string, apps.Config) { n, c, _ := appOf(s); return n, c }

// App returns the client's application name and configuration.
func (t *Traffic) App() (string, apps.Config) { n, c, _ := appOf(t); return n, c }

// Addr4 is the workload's IPv4 address.
func (w *Workload) Addr4() netip.Addr { a, _ := netip.ParseAddr(w.IPv4); return a }

// Addr6 is the workload's IPv6 address, or the zero Addr.
func (w *Workload) Addr6() netip.Addr { a, _ := netip.ParseAddr(w.IPv6); return a }

// Workload returns the workload called name, or nil.
func (s *Scenario) Workload(name string) *Workload {
	for i := range s.Workloads {
		if s.Workloads[i].Name == name {
			return &s.Workloads[i]
		}
	}
	return nil
}

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtins returns the names of the scenarios built into the binary.
func Builtins() []string {
	ents, _ := builtinFS.ReadDir("builtin")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// BuiltinSource returns the YAML text of a built-in scenario.
func BuiltinSource(name string) ([]byte, error) {
	b, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("scenario: no built-in scenario %q (built in: %s)", name, strings.Join(Builtins(), ", "))
	}
	return b, nil
}

// Builtin returns a built-in scenario, decoded and validated.
func Builtin(name string) (*Scenario, error) {
	b, err := BuiltinSource(name)
	if err != nil {
		return nil, err
	}
	return Parse(name+".yaml", b)
}

// Load returns the built-in scenario called nameOrPath, or else reads the
// file at that path.
func Load(nameOrPath string) (*Scenario, error) {
	if !strings.ContainsAny(nameOrPath, "/.") {
		if _, err := BuiltinSource(nameOrPath); err == nil {
			return Builtin(nameOrPath)
		}
	}
	b, err := os.ReadFile(nameOrPath)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return Parse(nameOrPath, b)
}

// WithHosts returns a copy of s whose workloads are spread over n hosts
// named hv1..hvN: workloads of the i-th host of s go to host (i mod n)+1,
// so that workloads that shared a host still do. Addresses do not change.
func (s *Scenario) WithHosts(n int) (*Scenario, error) {
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("scenario %s: %d hosts: want 1-250", s.Name, n)
	}
	out := *s
	out.Hosts = nil
	for i := 1; i <= n; i++ {
		out.Hosts = append(out.Hosts, Host{Name: fmt.Sprintf("hv%d", i)})
	}
	idx := map[string]int{}
	for i, h := range s.Hosts {
		idx[h.Name] = i
	}
	out.Workloads = append([]Workload(nil), s.Workloads...)
	for i := range out.Workloads {
		out.Workloads[i].Host = fmt.Sprintf("hv%d", idx[out.Workloads[i].Host]%n+1)
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return &out, nil
}
