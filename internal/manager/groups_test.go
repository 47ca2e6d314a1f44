package manager

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
)

func TestGroupMembers(t *testing.T) {
	tm := startManager(t)
	admin, auditor := tm.client(t, api.RoleAdmin), tm.client(t, api.RoleAuditor)
	ctx := context.Background()
	applyText(t, admin, analysisInventory+"---\n"+analysisPolicy+`---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: shop-front}
spec: {groups: [shop-web], ips: [10.7.1.0/24, 192.0.2.7], users: [alice], fqdns: ["*.shop.test"]}
`)
	got, err := auditor.GroupMembers(ctx, "shop-front", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := api.GroupMembers{Group: "shop-front", Revision: 1,
		Workloads: []api.GroupMemberWorkload{{Name: "web1", IPs: []string{"10.7.1.1"}}},
		Addresses: []string{"10.7.1.0/24", "192.0.2.7/32"}, Users: []string{"alice"}, FQDNs: []string{"*.shop.test"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("shop-front members:\n got %+v\nwant %+v", got, want)
	}

	// Membership follows the inventory: a second api workload joins
	// shop-api as soon as it is declared, without a policy change.
	applyText(t, admin, `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: api2}
spec: {ips: [10.7.2.2], tags: {app: shop, tier: api}}
`)
	got, err = auditor.GroupMembers(ctx, "shop-api", 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.GroupMemberWorkload{{Name: "api1", IPs: []string{"10.7.2.1"}}, {Name: "api2", IPs: []string{"10.7.2.2"}}}; !reflect.DeepEqual(got.Workloads, want) {
		t.Errorf("shop-api workloads %+v, want %+v", got.Workloads, want)
	}
	if len(got.Addresses) != 0 {
		t.Errorf("shop-api addresses %v, want none (a tag-matched group lists workloads only)", got.Addresses)
	}

	for _, c := range []struct {
		group    string
		revision int64
		status   int
	}{
		{"nosuch", 0, http.StatusNotFound},
		{"10.7.3.1", 0, http.StatusNotFound}, // an inline literal is no group
		{"shop-api", 99, http.StatusNotFound},
	} {
		_, err := auditor.GroupMembers(ctx, c.group, c.revision)
		var e *apiclient.Error
		if !errors.As(err, &e) || e.Status != c.status {
			t.Errorf("members of %s in revision %d: %v, want HTTP %d", c.group, c.revision, err, c.status)
		}
	}
}
