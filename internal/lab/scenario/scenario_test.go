package scenario

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/errors")

// Every file in testdata/errors is refused with the errors (file, line,
// column, field, reason) in its .golden file.
func TestErrorsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(filepath.Base(f), data)
			if err == nil {
				t.Fatal("accepted")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s (run with -update after checking):\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// Unknown fields are refused with the line they are on, at every depth.
func TestUnknownFieldLines(t *testing.T) {
	data, err := os.ReadFile("testdata/errors/unknown-fields.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("u.yaml", data)
	var list ErrorList
	if !asList(err, &list) {
		t.Fatalf("%T %v, want an ErrorList", err, err)
	}
	want := map[string]int{`"hostt"`: 8, `"minTls"`: 11, `"htpp"`: 12, `"trafic"`: 13}
	for field, line := range want {
		found := false
		for _, e := range list {
			if strings.Contains(e.Msg, "unknown field "+field) {
				found = true
				if e.Line != line {
					t.Errorf("%s reported on line %d, want %d", field, e.Line, line)
				}
			}
		}
		if !found {
			t.Errorf("no error for unknown field %s in:\n%v", field, err)
		}
	}
	if !strings.Contains(err.Error(), `did you mean "minTLS"?`) || !strings.Contains(err.Error(), `did you mean "host"?`) {
		t.Errorf("no suggestions in:\n%v", err)
	}
}

func asList(err error, l *ErrorList) bool {
	x, ok := err.(ErrorList)
	*l = x
	return ok
}

func TestMinimalScenario(t *testing.T) {
	s, err := Load("testdata/min.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := s.Launches(LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Launch{}
	for _, l := range ls {
		byName[l.Workload+"/"+l.Name] = l
	}
	shopper := byName["client/client-shopper"].Config.(*apps.ShopperConfig)
	if want := []string{"http://www.mini.test/", "https://10.78.0.10/"}; !slices.Equal(shopper.URLs, want) {
		t.Errorf("shopper URLs %q, want %q (names kept, workloads resolved)", shopper.URLs, want)
	}
	env := apps.EnvOf(shopper)
	if env.Resolver != "10.78.0.53:53" {
		t.Errorf("resolver %q", env.Resolver)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.78.0.10/32"), netip.MustParsePrefix("10.78.0.53/32"), netip.MustParsePrefix("10.78.0.20/32")}; !slices.Equal(env.Allow, want) {
		t.Errorf("allow %v, want %v", env.Allow, want)
	}
	https := byName["web/https"].Config.(*apps.HTTPSConfig)
	if want := []string{"web.mini.test", "www.mini.test", "10.78.0.10"}; !slices.Equal(https.Names, want) {
		t.Errorf("certificate names %q, want %q", https.Names, want)
	}
	if https.Port != 443 || https.MinTLS != "1.0" {
		t.Errorf("https defaults: port %d minTLS %s", https.Port, https.MinTLS)
	}
	dns := byName["dns/dns"].Config.(*apps.DNSConfig)
	var names []string
	for _, r := range dns.Zones[0].Records {
		names = append(names, r.Name)
	}
	if want := []string{"www", "web", "dns", "client"}; !slices.Equal(names, want) {
		t.Errorf("zone records %q, want %q (one per workload added)", names, want)
	}
	// With a lab CA, servers get it to issue from and clients to verify with.
	ca, err := apps.NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	ls, err = s.Launches(LaunchOptions{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		switch c := l.Config.(type) {
		case *apps.HTTPSConfig:
			if c.CAKeyPEM == "" {
				t.Error("https server without the CA key")
			}
		case *apps.TLSClientConfig:
			if c.CACertPEM == "" {
				t.Error("tls-client without the CA")
			}
		}
		j, err := l.JSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := apps.Decode(l.App, j)
		if err != nil {
			t.Fatalf("%s: %v", l.App, err)
		}
		if err := back.Validate(); err != nil {
			t.Errorf("%s/%s after JSON: %v", l.Workload, l.Name, err)
		}
	}
	// Launching does not change the scenario.
	if s.Traffic[0].Shopper.URLs[1] != "https://web/" {
		t.Errorf("the scenario was modified: %q", s.Traffic[0].Shopper.URLs)
	}
}

func TestBuiltinShop(t *testing.T) {
	if !slices.Contains(Builtins(), "shop") {
		t.Fatalf("built-ins %v", Builtins())
	}
	s, err := Load("shop")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := s.Launches(LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, l := range ls {
		used[l.App] = true
		if a, _ := apps.Lookup(l.App); a.Server != l.Server {
			t.Errorf("%s/%s: server %v, app says %v", l.Workload, l.Name, l.Server, a.Server)
		}
		for _, p := range apps.EnvOf(l.Config).Allow {
			if !netip.MustParsePrefix("10.77.0.0/16").Contains(p.Addr()) && !netip.MustParsePrefix("fd00:77::/48").Contains(p.Addr()) {
				t.Errorf("%s/%s may connect to %s, outside the lab", l.Workload, l.Name, p)
			}
		}
	}
	for _, n := range apps.Names() {
		if !used[n] {
			t.Errorf("the shop does not use the %s app", n)
		}
	}
	untagged := 0
	for _, w := range s.Workloads {
		if len(w.Tags) == 0 {
			untagged++
			if w.Truth["app"] == "" || w.Truth["tier"] == "" {
				t.Errorf("untagged workload %s has no truth (app, tier)", w.Name)
			}
		}
	}
	if untagged < 3 {
		t.Errorf("%d untagged workloads, want a few", untagged)
	}
	var rdsh *apps.RDSHConfig
	for _, tr := range s.Traffic {
		if tr.RDSH != nil {
			rdsh = tr.RDSH
		}
	}
	if rdsh == nil || len(rdsh.Users) < 2 {
		t.Fatal("no RDSH host with several users")
	}
	for _, u := range rdsh.Users {
		r, _ := apps.ParsePortRange(u.Ports)
		if r.Hi >= 32768 {
			t.Errorf("%s's ports %s reach the kernel's ephemeral range", u.Name, r)
		}
	}
}

// Every application is reachable from exactly one place in a scenario:
// servers under workloads[].apps, clients under traffic.
func TestAppKeysCoverRegistry(t *testing.T) {
	got := append(serverApps(), clientApps()...)
	slices.Sort(got)
	if !slices.Equal(got, apps.Names()) {
		t.Fatalf("scenario keys %q\n   app names %q", got, apps.Names())
	}
	for _, n := range serverApps() {
		if a, _ := apps.Lookup(n); !a.Server {
			t.Errorf("%s is under workloads[].apps but is a client", n)
		}
	}
}

func TestWithHosts(t *testing.T) {
	s, err := Builtin("shop")
	if err != nil {
		t.Fatal(err)
	}
	one, err := s.WithHosts(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range one.Workloads {
		if w.Host != "hv1" {
			t.Fatalf("%s on %s", w.Name, w.Host)
		}
	}
	two, err := s.WithHosts(2)
	if err != nil {
		t.Fatal(err)
	}
	if w := two.Workload("dns1"); w.Host != "hv1" { // hv3 -> (2 mod 2)+1
		t.Errorf("dns1 on %s, want hv1", w.Host)
	}
	if s.Workload("dns1").Host != "hv3" {
		t.Error("WithHosts changed the original")
	}
	if _, err := s.WithHosts(0); err == nil {
		t.Error("0 hosts accepted")
	}
}

func TestPosition(t *testing.T) {
	src := "name: x\nworkloads:\n  - name: a\n    tags:\n      app: shop\n    apps:\n      - http: {port: 80}\n"
	s := &Scenario{}
	if err := parseRoot(s, src); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][2]int{
		"name":                           {1, 7},
		"workloads[0].name":              {3, 11},
		"workloads[0].tags":              {4, 5},
		`workloads[0].tags["app"]`:       {5, 12},
		"workloads[0].apps[0].http.port": {7, 22},
		"workloads[0].apps[0].http.nope": {7, 15},
		"workloads[3].name":              {2, 1},
	} {
		if l, c := s.position(path); l != want[0] || c != want[1] {
			t.Errorf("%s at %d:%d, want %d:%d", path, l, c, want[0], want[1])
		}
	}
}

func parseRoot(s *Scenario, src string) error {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		return err
	}
	s.root = &root
	return nil
}
