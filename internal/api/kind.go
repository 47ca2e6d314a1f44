package api

import (
	"fmt"
	"strings"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// ParseKind accepts a kind as users type it: "Group", "group", "groups",
// and a few short forms ("svc", "wl", "profile", "policies").
func ParseKind(s string) (policy.Kind, error) {
	l := strings.ToLower(s)
	switch l {
	case "svc", "svcs":
		return policy.KindService, nil
	case "wl", "wls":
		return policy.KindWorkload, nil
	case "profile", "profiles", "cp":
		return policy.KindContextProfile, nil
	case "policies":
		return policy.KindPolicy, nil
	case "default", "defaultrules":
		return policy.KindDefaultRule, nil
	}
	for _, k := range policy.Kinds {
		kl := strings.ToLower(string(k))
		if l == kl || l == kl+"s" {
			return k, nil
		}
	}
	names := make([]string, len(policy.Kinds))
	for i, k := range policy.Kinds {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown kind %q (one of %s)", s, strings.Join(names, ", "))
}
