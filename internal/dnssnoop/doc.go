// Package dnssnoop is the agent's side of FQDN filtering: it reads the DNS
// answers its workloads receive (an NFLOG group fed by a small nftables table
// of its own), parses them without allocating, keeps which names each
// address currently answers for (each record's TTL plus a grace, bounded by
// caps), and writes the addresses of the names a policy's FQDN patterns
// match into nftables sets whose elements time out by themselves.
package dnssnoop
