package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/dispatch"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// disableHookURL is the disable hook as amoCRM signs it for an account: the
// same URL every time, so anyone who saw it once (a proxy's log) can replay it.
func disableHookURL(b *backend, accountID int64) string {
	id := fmt.Sprint(accountID)
	m := hmac.New(sha256.New, []byte(clientSecret))
	m.Write([]byte(clientID + "|" + id))
	q := url.Values{"client_uuid": {clientID}, "account_id": {id}, "signature": {hex.EncodeToString(m.Sum(nil))}}
	return b.URL + "/oauth/amocrm/disconnect?" + q.Encode()
}

func TestDisableHookReplay(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind)
		b := e.start()
		ctx := context.Background()
		tn := newTenant(t, e, b, 47000000, "replay", "ru", 7000)

		// Genuine: amoCRM revokes the tokens, then calls the hook.
		if s, err := e.amo.SendDisconnect(tn.acc.ID, b.URL+"/oauth/amocrm/disconnect"); s != 200 || err != nil {
			t.Fatalf("genuine disable hook: %d %v", s, err)
		}
		if a, _ := b.Store().Account(ctx, tn.acc.ID); a.Status != dispatch.AccountDisabled {
			t.Fatalf("after a genuine disable: %s", a.Status)
		}
		if _, err := b.Store().Tokens(ctx, tn.acc.ID); err == nil {
			t.Fatal("tokens survived a genuine disable")
		}

		// The admin installs again; someone replays the hook they saw.
		install(t, e, b, tn.acc.ID)
		before, _ := b.Store().Account(ctx, tn.acc.ID)
		tokens, _ := b.Store().Tokens(ctx, tn.acc.ID)
		if s, body := get(t, disableHookURL(b, tn.acc.ID)); s != 200 {
			t.Fatalf("replayed hook: %d %s (amoCRM must not be asked to retry it)", s, body)
		}
		after, _ := b.Store().Account(ctx, tn.acc.ID)
		if after.Status != dispatch.AccountActive || after.UpdatedAt != before.UpdatedAt {
			t.Fatalf("a replayed hook changed the account: %s", after.Status)
		}
		if now, err := b.Store().Tokens(ctx, tn.acc.ID); err != nil || now.Access != tokens.Access {
			t.Fatalf("a replayed hook touched the tokens: %v", err)
		}
		if !strings.Contains(e.logs.String(), "disconnect hook ignored") {
			t.Fatal("the ignored hook is not logged")
		}
		lead := tn.newLead(t, e, "После повтора хука")
		tn.toSearch(t, e, lead.ID)
		tn.postedOrder(t, b, lead.ID)

		// amoCRM unreachable while the hook is checked: not confirmed, so
		// nothing changes and amoCRM may retry.
		e.amo.InjectFault(fakeamocrm.Fault{Pattern: "GET /api/v4/account", Times: -1, Status: 503})
		if s, _ := get(t, disableHookURL(b, tn.acc.ID)); s < 500 {
			t.Fatalf("hook while amoCRM is down: %d, want 5xx", s)
		}
		e.amo.ClearFaults()
		if a, _ := b.Store().Account(ctx, tn.acc.ID); a.Status != dispatch.AccountActive {
			t.Fatalf("an unconfirmed hook switched the account off: %s", a.Status)
		}

		// The genuine hook still works after all that.
		if s, err := e.amo.SendDisconnect(tn.acc.ID, b.URL+"/oauth/amocrm/disconnect"); s != 200 || err != nil {
			t.Fatalf("second genuine disable: %d %v", s, err)
		}
		if a, _ := b.Store().Account(ctx, tn.acc.ID); a.Status != dispatch.AccountDisabled {
			t.Fatalf("after the second genuine disable: %s", a.Status)
		}
	})
}
