package e2e

import (
	"strings"
	"testing"

	"github.com/amodispatch/amodispatch/backend/internal/dbtest"
	"github.com/amodispatch/amodispatch/backend/internal/fakeamocrm"
)

// Telephony and site forms name deals after the caller and put contacts into
// text fields; with default settings (every non-empty field shown) the group
// sees neither, and the executor field of an earlier take never shows.
func TestGroupTextHidesClientData(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, kind dbtest.Kind) {
		e := newEnv(t, kind, withAmoOptions(func(o *fakeamocrm.Options) { o.DisableRateLimit = true }))
		b := e.start()
		tn := newTenant(t, e, b, 47000000, "privacy", "ru", 7000)
		var executorField int64
		for _, f := range tn.acc.LeadFields() {
			if f.Code == "AMODISPATCH_EXECUTOR" {
				executorField = f.ID
			}
		}
		if executorField == 0 {
			t.Fatal("the install created no executor field")
		}
		lead := tn.newLead(t, e, "Входящий звонок +7 916 555-12-34")
		if _, err := e.amo.UpdateLead(tn.acc.ID, lead.ID, func(l *fakeamocrm.Lead) {
			l.CustomFieldsValues = []fakeamocrm.CustomFieldValue{
				{FieldID: tn.acc.ID + 10, Values: []fakeamocrm.FieldValue{{Value: "ул. Ленина, 1; звонить 8-916-555-12-34, ivan@example.com"}}},
				// A deal re-posted after an earlier executor dropped out.
				{FieldID: executorField, Values: []fakeamocrm.FieldValue{{Value: "Старый Исполнитель (@old), Telegram ID 5550001"}}},
			}
		}); err != nil {
			t.Fatal(err)
		}
		tn.toSearch(t, e, lead.ID)
		o := tn.postedOrder(t, b, lead.ID)
		var text string
		for _, m := range e.tg.Messages(tn.group.ID) {
			if m.MessageID == o.MessageID {
				text = m.Text
			}
		}
		for _, leak := range []string{"916 555", "555-12-34", "ivan@example.com", "Старый Исполнитель", "5550001"} {
			if strings.Contains(text, leak) {
				t.Errorf("%q reaches the group:\n%s", leak, text)
			}
		}
		for _, want := range []string{"Входящий звонок +* *** ***-**-34", "ул. Ленина, 1; звонить *-***-***-**-34, i***@***"} {
			if !strings.Contains(text, want) {
				t.Errorf("want %q in the group post:\n%s", want, text)
			}
		}
	})
}
