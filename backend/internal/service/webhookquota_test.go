package service

import (
	"testing"
	"time"
)

func TestWebhookQuota(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := newWebhookQuota(10)
	stored := 0
	var retry time.Duration
	for range 300 {
		ok, after := q.take(1, now)
		if ok {
			stored++
		} else {
			retry = after
		}
	}
	if stored != 10*webhookQuotaBurst {
		t.Fatalf("a flood of 300 at once stored %d, want the burst %d", stored, 10*webhookQuotaBurst)
	}
	if retry != time.Second {
		t.Fatalf("Retry-After %v, want 1s (one delivery comes back every 100 ms)", retry)
	}
	if ok, _ := q.take(2, now); !ok {
		t.Fatal("another account was refused by the first one's flood")
	}
	if ok, _ := q.take(1, now.Add(100*time.Millisecond)); !ok {
		t.Fatal("the account was not let in again after its quota refilled")
	}
	if !q.shouldLog(1, now) || q.shouldLog(1, now.Add(30*time.Second)) || !q.shouldLog(1, now.Add(time.Minute)) {
		t.Error("a refusal is logged once a minute per account")
	}
	off := newWebhookQuota(0)
	for range 1000 {
		if ok, _ := off.take(1, now); !ok {
			t.Fatal("WEBHOOK_QUOTA=0 refused a delivery")
		}
	}
}
