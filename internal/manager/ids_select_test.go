package manager

import (
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/nft"
	"github.com/bulkhead/bulkhead/internal/policy"
	"github.com/bulkhead/bulkhead/internal/span"
	"github.com/bulkhead/bulkhead/internal/store"
)

// idsTestRules are written for these tests: one signature per kind of
// target the selection tells apart.
const idsTestRules = `# test signatures
alert http $EXTERNAL_NET any -> $HTTP_SERVERS $HTTP_PORTS (msg:"TEST web path traversal"; flow:established,to_server; http.uri; content:"/etc/passwd"; classtype:web-application-attack; metadata:attack_target Web_Server, affected_product Apache_HTTP_server, signature_severity Major; sid:1001; rev:2;)
alert tcp $EXTERNAL_NET any -> $SQL_SERVERS 5432 (msg:"TEST postgres copy program"; flow:established,to_server; content:"COPY"; nocase; classtype:attempted-admin; metadata:attack_target SQL_Server, affected_product PostgreSQL; reference:cve,2019-9193; sid:1002; rev:1;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"TEST windows dropper download"; flow:established,to_server; http.uri; content:".exe"; classtype:trojan-activity; metadata:affected_product Windows_XP_Vista_7_8_10_Server_32_64_Bit, attack_target Client_Endpoint; sid:1003; rev:1;)
alert tcp any any -> $HOME_NET any (msg:"TEST jndi lookup"; flow:established,to_server; content:"${jndi:"; classtype:attempted-admin; metadata:cve CVE_2021_44228; sid:1004; rev:1;)
drop tcp any any -> $HOME_NET 22 (msg:"TEST ssh scanner"; flow:to_server; content:"SSH-"; classtype:misc-activity; sid:1005; rev:1;)
alert dns any any -> any any (msg:"TEST dns query for evil"; dns.query; content:"evil"; classtype:policy-violation; priority:2; sid:1006; rev:1;)
alert tcp any any -> $HOME_NET 23 (msg:"TEST router telnet default password"; flow:to_server; content:"admin"; classtype:attempted-user; metadata:attack_target Networking_Equipment; sid:1007; rev:1;)
alert tcp any any -> any any (msg:"TEST unsupported"; lua:check.lua; sid:1099; rev:1;)
`

func testSigs(t testing.TB) []*idsSig {
	t.Helper()
	rs, probs := rules.Read(strings.NewReader(idsTestRules), "test.rules", rules.DefaultVars())
	if len(rs) != 7 || len(probs) != 1 || probs[0].SID != 1099 {
		t.Fatalf("test rules: %d loaded, problems %+v", len(rs), probs)
	}
	cat := newCatalog(1, []*idsSet{{rules: rs}})
	for _, s := range cat.sigs {
		s.set = "test"
	}
	return cat.sigs
}

func sidsOf(ch idsChoice) string { return fmt.Sprint(ch.SIDs) }

func profile(t testing.TB, name, mode string, f policy.IDSSignatureFilter, members ...string) *idsProfile {
	t.Helper()
	p := &idsProfile{name: name, prevent: mode == policy.IDSModePrevent, aware: true, filter: compileFilter(f)}
	if len(members) > 0 {
		p.members = map[string]bool{}
		for _, m := range members {
			p.members[m] = true
		}
	}
	return p
}

func wl(name, os string, tags map[string]string, served ...servedPort) *idsWorkload {
	return workloadFacts(&policy.Workload{Header: policy.Header{Metadata: policy.Metadata{Name: name}},
		Spec: policy.WorkloadSpec{OS: os, Tags: tags, Host: "h", Interface: "bhw-" + name}}, served)
}

func TestSelectWorkloadAware(t *testing.T) {
	sigs := testSigs(t)
	all := profile(t, "all", policy.IDSModeDetect, policy.IDSSignatureFilter{})
	all.prefilter(sigs)
	tests := []struct {
		name string
		w    *idsWorkload
		want string
		// leftOut: a sid and a word of its reason
		leftOut map[uint32]string
	}{
		{"knows nothing: everything", wl("x", "", nil), "[1001 1002 1003 1004 1005 1006 1007]", nil},
		{"db tier on linux: no web server, no windows, no router", wl("db", "Ubuntu 22.04", map[string]string{"tier": "db"}),
			"[1002 1004 1005 1006]",
			map[uint32]string{1001: "attack_target Web_Server needs a web server", 1003: "Windows_XP", 1007: "Networking_Equipment"}},
		{"web tier on linux", wl("web", "linux", map[string]string{"tier": "web"}),
			"[1001 1004 1005 1006]",
			map[uint32]string{1002: "SQL_Server", 1003: "OS linux", 1007: "Networking_Equipment"}},
		{"windows, roles unknown", wl("pc", "Windows Server 2019", nil),
			"[1001 1002 1003 1004 1005 1006]", map[uint32]string{1007: "runs windows"}},
		{"serves only postgres per flows: port 22 and web signatures out", wl("pg", "", nil, servedPort{Proto: 6, Port: 5432, App: "APP_POSTGRES"}),
			"[1002 1003 1004 1006]",
			map[uint32]string{1001: "web server", 1005: "seen serving only tcp/5432", 1007: "ports 23"}},
		{"serves http on 8080 per flows", wl("w2", "", nil, servedPort{Proto: 6, Port: 8080, App: "APP_HTTP"}),
			"[1001 1003 1004 1006]", map[uint32]string{1002: "SQL_Server", 1005: "ports 22", 1007: "ports 23"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := selectSignatures(tt.w, []*idsProfile{all}, true)
			if got := sidsOf(ch); got != tt.want {
				t.Errorf("sids %s, want %s; left out %+v", got, tt.want, ch.Left)
			}
			if ch.Mode != policy.IDSModeDetect || len(ch.Prevent) != 0 {
				t.Errorf("mode %s prevent %v", ch.Mode, ch.Prevent)
			}
			for sid, word := range tt.leftOut {
				l := ch.Left[sid]
				if len(l) != 1 || !strings.Contains(l[0].Reason, word) {
					t.Errorf("sid %d left out as %+v, want a reason with %q", sid, l, word)
				}
			}
			if len(ch.Left) != len(tt.leftOut) {
				t.Errorf("left out %d signatures, want %d: %+v", len(ch.Left), len(tt.leftOut), ch.Left)
			}
		})
	}
	// workloadAware: false gives a db tier everything.
	blind := profile(t, "blind", policy.IDSModeDetect, policy.IDSSignatureFilter{})
	blind.aware = false
	blind.prefilter(sigs)
	if got := sidsOf(selectSignatures(wl("db", "linux", map[string]string{"tier": "db"}), []*idsProfile{blind}, false)); got != "[1001 1002 1003 1004 1005 1006 1007]" {
		t.Errorf("workloadAware false: %s", got)
	}
}

func TestSelectFilters(t *testing.T) {
	sigs := testSigs(t)
	x := wl("x", "", nil)
	tests := []struct {
		name string
		f    policy.IDSSignatureFilter
		want string
	}{
		{"maxSeverity 1", policy.IDSSignatureFilter{MaxSeverity: 1}, "[1001 1002 1003 1004 1007]"},
		{"maxSeverity 2", policy.IDSSignatureFilter{MaxSeverity: 2}, "[1001 1002 1003 1004 1006 1007]"},
		{"classtypes", policy.IDSSignatureFilter{Classtypes: []string{"Attempted-Admin"}}, "[1002 1004]"},
		{"excludeClasstypes", policy.IDSSignatureFilter{ExcludeClasstypes: []string{"attempted-admin", "misc-activity"}}, "[1001 1003 1006 1007]"},
		{"metadata, case-insensitive", policy.IDSSignatureFilter{Metadata: map[string][]string{"attack_target": {"web_server", "SQL_SERVER"}}}, "[1001 1002]"},
		{"metadata, two keys", policy.IDSSignatureFilter{Metadata: map[string][]string{"attack_target": {"Web_Server", "SQL_Server"}, "signature_severity": {"major"}}}, "[1001]"},
		{"cve from reference", policy.IDSSignatureFilter{CVEs: []string{"CVE-2019-9193"}}, "[1002]"},
		{"cve from metadata", policy.IDSSignatureFilter{CVEs: []string{"CVE-2021-44228"}}, "[1004]"},
		{"sids add to the filter", policy.IDSSignatureFilter{CVEs: []string{"CVE-2021-44228"}, SIDs: []uint32{1006}}, "[1004 1006]"},
		{"excludeSids", policy.IDSSignatureFilter{ExcludeSIDs: []uint32{1001, 1002, 1003}}, "[1004 1005 1006 1007]"},
		{"signatureSets", policy.IDSSignatureFilter{SignatureSets: []string{"other"}}, "[]"},
		{"signatureSets by name", policy.IDSSignatureFilter{SignatureSets: []string{"test"}, MaxSeverity: 1, Classtypes: []string{"trojan-activity"}}, "[1003]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := profile(t, "p", policy.IDSModeDetect, tt.f)
			p.prefilter(sigs)
			if got := sidsOf(selectSignatures(x, []*idsProfile{p}, false)); got != tt.want {
				t.Errorf("sids %s, want %s", got, tt.want)
			}
		})
	}
	// A sid named in sids is in even where the workload-aware step would
	// leave it out.
	p := profile(t, "p", policy.IDSModeDetect, policy.IDSSignatureFilter{SIDs: []uint32{1001}, CVEs: []string{"CVE-2000-0001"}})
	p.prefilter(sigs)
	if got := sidsOf(selectSignatures(wl("db", "linux", map[string]string{"tier": "db"}), []*idsProfile{p}, false)); got != "[1001]" {
		t.Errorf("forced sid on a db tier: %s", got)
	}
}

func TestSelectModes(t *testing.T) {
	sigs := testSigs(t)
	base := profile(t, "base", policy.IDSModeDetect, policy.IDSSignatureFilter{MaxSeverity: 2})
	webIPS := profile(t, "web-ips", policy.IDSModePrevent, policy.IDSSignatureFilter{Metadata: map[string][]string{"attack_target": {"Web_Server"}}, SIDs: []uint32{1005}}, "web")
	for _, p := range []*idsProfile{base, webIPS} {
		p.prefilter(sigs)
	}
	profiles := []*idsProfile{webIPS, base}
	web := wl("web", "linux", map[string]string{"tier": "web"})
	ch := selectSignatures(web, profiles, false)
	if ch.Mode != policy.IDSModePrevent || !slices.Equal(ch.Profiles, []string{"base", "web-ips"}) {
		t.Fatalf("web: mode %s profiles %v", ch.Mode, ch.Profiles)
	}
	if sidsOf(ch) != "[1001 1004 1005 1006]" || fmt.Sprint(ch.Prevent) != "[1001 1005]" {
		t.Errorf("web: sids %v prevent %v", ch.SIDs, ch.Prevent)
	}
	if !slices.Equal(ch.By[1001], []string{"web-ips", "base"}) || !slices.Equal(ch.By[1006], []string{"base"}) {
		t.Errorf("web: chosen by %v", ch.By)
	}
	// The prevent profile does not apply to the db tier: detect only.
	db := wl("db", "linux", map[string]string{"tier": "db"})
	ch = selectSignatures(db, profiles, false)
	if ch.Mode != policy.IDSModeDetect || len(ch.Prevent) != 0 || !slices.Equal(ch.Profiles, []string{"base"}) {
		t.Errorf("db: mode %s prevent %v profiles %v", ch.Mode, ch.Prevent, ch.Profiles)
	}
	// No profile applies: nothing.
	only := profile(t, "only", policy.IDSModePrevent, policy.IDSSignatureFilter{}, "nobody")
	only.prefilter(sigs)
	if ch := selectSignatures(db, []*idsProfile{only}, false); len(ch.SIDs) != 0 || len(ch.Profiles) != 0 {
		t.Errorf("unrelated profile: %+v", ch)
	}
}

func TestNormalizeAndClassify(t *testing.T) {
	for in, want := range map[string]string{"CVE_2021_44228": "CVE-2021-44228", "2019-9193": "CVE-2019-9193", "cve-2014-0160": "CVE-2014-0160"} {
		if got := normalizeCVE(in); got != want {
			t.Errorf("normalizeCVE(%q) = %q", in, got)
		}
	}
	for in, want := range map[string]product{
		"Microsoft_IIS":             {os: "windows", role: roleWeb},
		"Apache_HTTP_server":        {role: roleWeb},
		"PostgreSQL":                {role: roleDB},
		"Linux":                     {os: "linux"},
		"Any":                       {},
		"Windows_DNS_server":        {os: "windows"},
		"Microsoft_SQL_Server_2019": {os: "windows", role: roleDB},
	} {
		got := classifyProduct(in)
		if got.os != want.os || got.role != want.role {
			t.Errorf("classifyProduct(%q) = %+v, want os %q role %q", in, got, want.os, want.role)
		}
	}
	for in, want := range map[string]string{"Ubuntu 22.04": "linux", "Microsoft Windows Server 2019 (64-bit)": "windows", "": "", "Solaris": ""} {
		if got := normalizeOS(in); got != want {
			t.Errorf("normalizeOS(%q) = %q", in, got)
		}
	}
}

// etOpen is the Emerging Threats Open rule file beside the repository
// (test data only, never in it).
func etOpen(tb testing.TB) *os.File {
	tb.Helper()
	path := filepath.Join("..", "..", "..", "shared", "data", "et-open", "et-open-suricata-5.0.rules.gz")
	f, err := os.Open(path)
	if err != nil {
		tb.Skipf("ET Open rules not found at %s (../shared/data beside the repository): %v", path, err)
	}
	return f
}

// BenchmarkSelectETOpen: selecting ET Open's signatures for a web tier, a
// db tier and a workload nothing is known of, and assembling the host's
// IDS state from them.
func BenchmarkSelectETOpen(b *testing.B) {
	f := etOpen(b)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	rs, probs := rules.Read(zr, "et-open", rules.DefaultVars())
	b.Logf("parsed %d rules (%d problems) in %v", len(rs), len(probs), time.Since(start).Round(time.Millisecond))
	cat := newCatalog(1, []*idsSet{{info: store.SignatureSet{Name: "et-open", Version: 1}, rules: rs}})
	workloads := []*idsWorkload{
		wl("web", "linux", map[string]string{"tier": "web"}),
		wl("db", "linux", map[string]string{"tier": "db"}),
		wl("x", "", nil),
	}
	b.ResetTimer()
	for range b.N {
		p := profile(b, "all", policy.IDSModeDetect, policy.IDSSignatureFilter{})
		ips := profile(b, "ips", policy.IDSModePrevent, policy.IDSSignatureFilter{MaxSeverity: 1}, "web")
		p.prefilter(cat.sigs)
		ips.prefilter(cat.sigs)
		var sels []span.IDSSelection
		for _, w := range workloads {
			ch := selectSignatures(w, []*idsProfile{p, ips}, false)
			sels = append(sels, span.IDSSelection{Workload: w.Name, Interface: w.Interface, Mode: ch.Mode, Profiles: ch.Profiles, SIDs: ch.SIDs, PreventSIDs: ch.Prevent})
			if b.N == 1 {
				b.Logf("%s: %d signatures, %d prevent", w.Name, len(ch.SIDs), len(ch.Prevent))
			}
		}
		st, err := span.IDS(rules.DefaultVars().Map(), sels, func(sid uint32) (span.IDSSignature, bool) {
			s := cat.bySID[sid]
			if s == nil {
				return span.IDSSignature{}, false
			}
			return span.IDSSignature{Text: s.rule.Raw, Set: s.label}, true
		})
		if err != nil {
			b.Fatal(err)
		}
		if b.N == 1 {
			v := nft.Verdict{Rule: 1, Action: nft.Allow}
			enc, err := span.Encode(&nft.HostState{EgressDefault: v, IngressDefault: v, IDS: st})
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("state: %d rules, %d bytes on the wire", len(st.Rules), len(enc))
		}
	}
}

// TestSelectPreventAction: a prevent profile with preventAction drop or
// reject enforces the alert signatures it chose; signatures written as
// drop keep their action, detect profiles enforce nothing, and reject
// wins over drop.
func TestSelectPreventAction(t *testing.T) {
	sigs := testSigs(t)
	base := profile(t, "base", policy.IDSModeDetect, policy.IDSSignatureFilter{MaxSeverity: 2})
	webIPS := profile(t, "web-ips", policy.IDSModePrevent, policy.IDSSignatureFilter{Metadata: map[string][]string{"attack_target": {"Web_Server"}}, SIDs: []uint32{1005}}, "web")
	webIPS.enforce = rules.ActionDrop
	jndi := profile(t, "jndi", policy.IDSModePrevent, policy.IDSSignatureFilter{CVEs: []string{"CVE-2021-44228"}}, "web", "db")
	jndi.enforce = rules.ActionReject
	asWritten := profile(t, "as-written", policy.IDSModePrevent, policy.IDSSignatureFilter{Classtypes: []string{"policy-violation"}}, "web", "db")
	for _, p := range []*idsProfile{base, webIPS, jndi, asWritten} {
		p.prefilter(sigs)
	}
	web := wl("web", "linux", map[string]string{"tier": "web"})
	db := wl("db", "linux", map[string]string{"tier": "db"})
	tests := []struct {
		name                         string
		w                            *idsWorkload
		profiles                     []*idsProfile
		sids, prevent, block, reject string
		enforced1001, enforced1005   string
	}{
		// 1001 is alert (enforced as drop), 1005 drop (as written), 1004
		// and 1006 are chosen by detect and as-written profiles only.
		{"drop profile", web, []*idsProfile{base, webIPS}, "[1001 1004 1005 1006]", "[1001 1005]", "[1001]", "[]", "drop", "drop"},
		{"reject profile on another sid", web, []*idsProfile{base, webIPS, jndi, asWritten}, "[1001 1004 1005 1006]", "[1001 1004 1005 1006]", "[1001]", "[1004]", "drop", "drop"},
		{"not applied to the db tier", db, []*idsProfile{base, webIPS, jndi}, "[1002 1004 1006]", "[1004]", "[]", "[1004]", "", ""},
		{"as written: alert signatures only alert", db, []*idsProfile{base, asWritten}, "[1002 1004 1006]", "[1006]", "[]", "[]", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := selectSignatures(tt.w, tt.profiles, false)
			got := fmt.Sprint(ch.SIDs, ch.Prevent, ch.Block, ch.Reject)
			if want := fmt.Sprint(tt.sids, " ", tt.prevent, " ", tt.block, " ", tt.reject); got != want {
				t.Errorf("sids prevent block reject: got %s, want %s", got, want)
			}
			if e := enforcedAction(rules.ActionAlert, 1001, &ch); e != tt.enforced1001 {
				t.Errorf("1001 enforced %q, want %q", e, tt.enforced1001)
			}
			if e := enforcedAction(rules.ActionDrop, 1005, &ch); e != tt.enforced1005 {
				t.Errorf("1005 enforced %q, want %q", e, tt.enforced1005)
			}
		})
	}
	// Two prevent profiles choosing the same alert signature, one with
	// drop and one with reject: reject, in either order.
	both := profile(t, "both", policy.IDSModePrevent, policy.IDSSignatureFilter{Metadata: map[string][]string{"attack_target": {"Web_Server"}}}, "web")
	both.enforce = rules.ActionReject
	both.prefilter(sigs)
	for _, ps := range [][]*idsProfile{{webIPS, both}, {both, webIPS}} {
		ch := selectSignatures(web, ps, false)
		if fmt.Sprint(ch.Block, ch.Reject) != "[] [1001]" || enforcedAction(rules.ActionAlert, 1001, &ch) != "reject" {
			t.Errorf("drop and reject: block %v reject %v", ch.Block, ch.Reject)
		}
	}
}
