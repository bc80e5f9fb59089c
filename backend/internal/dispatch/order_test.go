package dispatch

import (
	"slices"
	"testing"
)

func TestLifecycle(t *testing.T) {
	all := []OrderStatus{OrderPosting, OrderOpen, OrderTaken, OrderWithdrawn, OrderFailed,
		OrderOnWay, OrderStarted, OrderDone, OrderReleased, OrderEnded}
	// Every pair, by press and not: a row missing here is a step the
	// lifecycle must refuse.
	allowed := map[[2]OrderStatus]string{ // "any" or "press"
		{OrderPosting, OrderOpen}:      "any",
		{OrderPosting, OrderTaken}:     "press",
		{OrderPosting, OrderWithdrawn}: "any",
		{OrderPosting, OrderFailed}:    "any",
		{OrderOpen, OrderTaken}:        "any",
		{OrderOpen, OrderWithdrawn}:    "any",
		// The executor's path: forward only; done, released and ended are final.
		{OrderTaken, OrderOnWay}:      "any",
		{OrderTaken, OrderStarted}:    "any",
		{OrderOnWay, OrderStarted}:    "any",
		{OrderTaken, OrderDone}:       "any",
		{OrderOnWay, OrderDone}:       "any",
		{OrderStarted, OrderDone}:     "any",
		{OrderTaken, OrderReleased}:   "any",
		{OrderOnWay, OrderReleased}:   "any",
		{OrderStarted, OrderReleased}: "any",
		{OrderTaken, OrderEnded}:      "any",
		{OrderOnWay, OrderEnded}:      "any",
		{OrderStarted, OrderEnded}:    "any",
	}
	for _, from := range all {
		for _, to := range all {
			for _, pressed := range []bool{false, true} {
				want := allowed[[2]OrderStatus{from, to}] == "any" || (pressed && allowed[[2]OrderStatus{from, to}] == "press")
				if got := CanBecome(from, to, pressed); got != want {
					t.Errorf("CanBecome(%s, %s, pressed=%v) = %v, want %v", from, to, pressed, got, want)
				}
			}
		}
	}
}

func TestSources(t *testing.T) {
	tests := []struct {
		to      OrderStatus
		pressed bool
		want    []OrderStatus
	}{
		{OrderTaken, false, []OrderStatus{OrderOpen}},
		{OrderTaken, true, []OrderStatus{OrderPosting, OrderOpen}},
		{OrderWithdrawn, false, []OrderStatus{OrderPosting, OrderOpen}},
		{OrderOpen, false, []OrderStatus{OrderPosting}},
		{OrderFailed, false, []OrderStatus{OrderPosting}},
		{OrderPosting, true, nil},
	}
	for _, tc := range tests {
		if got := Sources(tc.to, tc.pressed); !slices.Equal(got, tc.want) {
			t.Errorf("Sources(%s, %v) = %v, want %v", tc.to, tc.pressed, got, tc.want)
		}
	}
}

func TestOrderQuestions(t *testing.T) {
	const me, other = 7, 8
	tests := []struct {
		o                                     Order
		takeable, takeablePressed, withdrawal bool
		contact, mine, others                 bool
	}{
		{o: Order{Status: OrderPosting}, takeablePressed: true, withdrawal: true},
		{o: Order{Status: OrderOpen}, takeable: true, takeablePressed: true, withdrawal: true, contact: true},
		{o: Order{Status: OrderTaken, ExecutorID: me}, contact: true, mine: true},
		{o: Order{Status: OrderTaken, ExecutorID: other}, contact: true, others: true},
		{o: Order{Status: OrderWithdrawn}},
		{o: Order{Status: OrderFailed}},
	}
	for _, tc := range tests {
		o := tc.o
		got := []bool{o.Takeable(false), o.Takeable(true), o.CanWithdraw(), o.ContactAllowed(), o.TakenBy(me), o.TakenByOther(me)}
		want := []bool{tc.takeable, tc.takeablePressed, tc.withdrawal, tc.contact, tc.mine, tc.others}
		if !slices.Equal(got, want) {
			t.Errorf("%s (executor %d): Takeable, Takeable(pressed), CanWithdraw, ContactAllowed, TakenBy, TakenByOther = %v, want %v",
				o.Status, o.ExecutorID, got, want)
		}
	}
}

func TestAwaitsPost(t *testing.T) {
	if !(Order{Status: OrderPosting}).AwaitsPost() {
		t.Error("a posting order without a message awaits its post")
	}
	if (Order{Status: OrderPosting, MessageID: 5}).AwaitsPost() {
		t.Error("a posting order with a recorded message must not be posted again")
	}
	if (Order{Status: OrderWithdrawn}).AwaitsPost() {
		t.Error("a withdrawn order is not posted")
	}
}

// A press asking for a status the order has reached, or passed, is a repeat.
func TestReached(t *testing.T) {
	tests := []struct {
		now, asked OrderStatus
		want       bool
	}{
		{OrderTaken, OrderOnWay, false},
		{OrderOnWay, OrderOnWay, true},
		{OrderStarted, OrderOnWay, true},
		{OrderOnWay, OrderStarted, false},
		{OrderDone, OrderOnWay, true},
		{OrderDone, OrderDone, true},
		{OrderStarted, OrderDone, false},
		{OrderReleased, OrderDone, false},
	}
	for _, tc := range tests {
		if got := (Order{Status: tc.now}).Reached(tc.asked); got != tc.want {
			t.Errorf("%s reached %s = %v, want %v", tc.now, tc.asked, got, tc.want)
		}
	}
}
