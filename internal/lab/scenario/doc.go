// Package scenario is the lab's scenario file: hosts, workloads (addresses,
// CMDB tags, the servers they run) and traffic (the clients each workload
// runs), decoded strictly from YAML, validated with errors that name the
// file, line, column and field, and turned into the application launches
// that `bulkhead lab up` starts inside the workloads' namespaces.
//
// The format, in short (see builtin/shop.yaml for a full example):
//
//	name: shop
//	network:
//	  ipv4: 10.77.0.0/16          # private; workloads' IPv4 addresses come from here
//	  ipv6: fd00:77::/48          # unique local; optional
//	  domain: lab.test            # every workload gets WORKLOAD.lab.test in the DNS
//	  dns: dns1                   # the workload whose dns app everyone resolves with
//	hosts:
//	  - name: hv1
//	workloads:
//	  - name: web1                # 1-12 characters: it names an interface
//	    host: hv1
//	    ipv4: 10.77.1.10
//	    ipv6: fd00:77:0:1::10
//	    os: debian-12
//	    tags: {app: shop, tier: web, env: prod}     # what the CMDB says; may be empty
//	    truth: {app: shop, tier: web}               # what it really is (for discovery tests)
//	    apps:                     # servers: one key per entry, the app's name
//	      - http: {port: 80, api: api1:8080}
//	      - name: legacy          # needed when two apps share a kind
//	        https: {port: 8443, minTLS: "1.0", maxTLS: "1.3"}
//	traffic:                      # clients
//	  - from: shopper1
//	    shopper: {urls: ["https://www.lab.test/"], interval: 4s, jitter: 2s, user: frank, password: frank-pw}
//
// A target is written "HOST", "HOST:PORT" or as a URL. HOST is a workload
// name (replaced by its IPv4 address at launch), a DNS name of the lab's
// zones (resolved at run time by the lab DNS server, so FQDN rules see real
// lookups), or a workload's address; anything else is an error, and so is a
// target port on which the workload runs no server (the attacker excepted).
// Each application's fields are those of its configuration type in package
// apps (HTTPConfig, ShopperConfig...), under their YAML names.
package scenario
