package analysis

import "testing"

// TestAppOnEdge: the map lists the app the L7 readers saw next to the
// port ("tcp/8443 APP_HTTPS"), apart from uninspected connections on the
// same port, and a profile rule decides by the app and TLS version.
func TestAppOnEdge(t *testing.T) {
	wls := workloads(t)
	ev := compile(t, wls, `
apiVersion: bulkhead.io/v1
kind: ContextProfile
metadata: {name: https}
spec:
  apps:
  - {name: APP_HTTPS, minVersion: "1.2"}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: l7}
spec:
  category: Application
  rules:
  - {name: https-only, destinations: [10.0.2.1], services: [tcp/8443], profiles: [https], action: allow}
  - {name: rest, destinations: [10.0.2.1], services: [tcp/8443], action: drop}
`)
	a, err := New(wls, Options{Eval: ev, NoDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	h := &history{}
	h.conn("web1", "api1", "tcp/8443", 4)
	h.recs[0].App, h.recs[0].TLSVersion, h.recs[0].ServerName = "APP_HTTPS", "1.3", "api.shop.test"
	h.recs[1].App, h.recs[1].TLSVersion = "APP_HTTPS", "1.3"
	h.recs[2].App, h.recs[2].TLSVersion = "APP_HTTPS", "1.0" // too old for the profile
	for i := range h.recs {
		a.Add(&h.recs[i])
	}
	if c := a.Total().Classes; c.Green != 2 || c.Red != 2 {
		t.Errorf("classes %+v: want the two TLS 1.3 connections green, TLS 1.0 and the uninspected one red", c)
	}
	m := a.Map(LevelWorkload, nil)
	e := edgeOf(t, m, "web1", "api1")
	if got, want := servicesOf(e), "tcp/8443 APP_HTTPS:3 tcp/8443:1"; got != want {
		t.Errorf("services %q, want %q", got, want)
	}
}
