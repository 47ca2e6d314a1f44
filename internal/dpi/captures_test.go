package dpi

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// label is the ground truth of flows in a capture (testdata/captures/labels.json).
// A label matches a flow by its client endpoint, else by the server's
// "proto/port", else "*".
type label struct {
	Client string  `json:"client"`
	Server string  `json:"server"`
	App    string  `json:"app"`
	TLS    *string `json:"tls"`
	Host   string  `json:"host"` // a path.Match pattern
	Why    string  `json:"why"`
	// Known explains an expected miss; the accuracy table counts it as
	// misidentified and the test tolerates it.
	Known string `json:"known"`
}

// sample is one payload the engine was fed, for the parser matrix, the
// fuzz seeds and the benchmark.
type sample struct {
	dir     Dir
	payload []byte
}

type labelledFlow struct {
	file    string
	flow    CaptureFlow
	label   label
	samples []sample
}

func (lf *labelledFlow) String() string {
	return fmt.Sprintf("%s %s %s -> %s", lf.file, protoName(lf.flow.Proto), lf.flow.Client, lf.flow.Server)
}

func protoName(p uint8) string {
	if p == UDP {
		return "udp"
	}
	return "tcp"
}

// loadCaptures reads every capture with its labels; every flow must have one.
func loadCaptures(t testing.TB) []labelledFlow {
	t.Helper()
	raw, err := os.ReadFile("testdata/captures/labels.json")
	if err != nil {
		t.Fatal(err)
	}
	var labels map[string][]label
	if err := json.Unmarshal(raw, &labels); err != nil {
		t.Fatalf("labels.json: %v", err)
	}
	files, _ := filepath.Glob("testdata/captures/*.pcap*")
	if len(files) != len(labels) {
		t.Fatalf("%d captures, %d labelled files", len(files), len(labels))
	}
	var out []labelledFlow
	for _, name := range files {
		base := filepath.Base(name)
		ls, ok := labels[base]
		if !ok {
			t.Fatalf("%s has no labels", base)
		}
		fh, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		samples := map[int][]sample{}
		c, err := readCapture(fh, func(flow int, _ uint8, dir Dir, p []byte) {
			samples[flow] = append(samples[flow], sample{dir, slices.Clone(p)})
		})
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if c.Truncated || len(c.Flows) == 0 {
			t.Fatalf("%s: truncated %v, %d flows", base, c.Truncated, len(c.Flows))
		}
		for i, f := range c.Flows {
			lf := labelledFlow{file: base, flow: f, samples: samples[i]}
			l, ok := labelFor(ls, &f)
			if !ok {
				t.Fatalf("%s: no label", lf.String())
			}
			if _, ok := ParseApp(l.App); !ok {
				t.Fatalf("%s: label %q is no app", base, l.App)
			}
			lf.label = l
			out = append(out, lf)
		}
	}
	return out
}

func labelFor(ls []label, f *CaptureFlow) (label, bool) {
	server := protoName(f.Proto) + "/" + strconv.Itoa(int(f.Server.Port()))
	for _, want := range []func(label) bool{
		func(l label) bool { return l.Client == f.Client.String() },
		func(l label) bool { return l.Server == server },
		func(l label) bool { return l.Server == "*" },
	} {
		for _, l := range ls {
			if want(l) {
				return l, true
			}
		}
	}
	return label{}, false
}

// check says what is wrong with the engine's result for a flow, "" if
// nothing.
func (lf *labelledFlow) check() string {
	r := &lf.flow.Result
	if got := r.App.String(); got != lf.label.App {
		return "app " + got
	}
	if lf.label.TLS != nil && r.TLSVersionName() != *lf.label.TLS {
		return fmt.Sprintf("TLS version %q, want %q", r.TLSVersionName(), *lf.label.TLS)
	}
	if lf.label.Host != "" {
		if ok, _ := path.Match(lf.label.Host, string(r.Host())); !ok {
			return fmt.Sprintf("host %q, want %q", r.Host(), lf.label.Host)
		}
	}
	return ""
}
