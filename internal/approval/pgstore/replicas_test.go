package pgstore_test

import (
	"context"
	"sync"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/approvaltest"
	"github.com/agentauthz/agentauthz/internal/approval/pgstore"
	"github.com/agentauthz/agentauthz/internal/approval/storetest"
)

// Two agentauthz servers sharing one real PostgreSQL, as two replicas behind Envoy: a request
// held through one is approved through the other, and 50 identical retries at the same instant,
// split across both, let exactly one through.
func TestReplicasSharePostgres(t *testing.T) {
	dsn := storetest.StartPostgres(t).FreshDSN(t)
	open := func() approval.Store {
		st, err := pgstore.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	one := approvaltest.Start(t, approvaltest.Options{Store: open()})
	two := approvaltest.Start(t, approvaltest.Options{Store: open()})

	req := approvaltest.Transfer(approvaltest.Payer, `{"amount":5000,"to":"DE89"}`)
	id := one.Held(req, "pending")
	if again := two.Held(req, "pending"); again != id {
		t.Fatalf("the other replica held the identical request as %s, not %s", again, id)
	}
	if st := two.Approve(id, approvaltest.AliceToken); st != 200 {
		t.Fatalf("approving %s through the second replica: %d", id, st)
	}
	if st := one.Approve(id, approvaltest.AliceToken); st != 409 {
		t.Errorf("approving again through the first replica: %d, want 409", st)
	}

	const n = 50
	answers := make([]approvaltest.Answer, n)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for i := 0; i < n; i++ {
		h := one
		if i%2 == 1 {
			h = two
		}
		wg.Add(1)
		go func(i int, h *approvaltest.Harness) {
			defer wg.Done()
			<-begin
			answers[i] = h.Check(approvaltest.Transfer(approvaltest.Payer, `{"amount":5000,"to":"DE89"}`, id))
		}(i, h)
	}
	close(begin)
	wg.Wait()
	allowed, used := 0, 0
	for _, a := range answers {
		switch {
		case a.Allow:
			allowed++
		case a.Status == 403 && a.Code == "approval_used":
			used++
		default:
			t.Errorf("unexpected answer to a retry: %v", a)
		}
	}
	if allowed != 1 || used != n-1 {
		t.Errorf("%d retries allowed and %d refused as used; want exactly 1 and %d", allowed, used, n-1)
	}
}
