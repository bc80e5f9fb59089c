package amocrm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readWebhookFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhooks", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWebhookFixtures(t *testing.T) {
	tests := []struct {
		file string
		want WebhookPayload
	}{
		{"lead_status_classic.txt", WebhookPayload{Subdomain: "mebelgrad", Leads: []LeadEvent{{
			Kind: WebhookStatus, LeadID: 41275533, StatusID: 33109210, PipelineID: 3820133, OldStatusID: 33109207,
			ResponsibleUserID: 5537719, ModifiedUserID: 5537701, LastModified: 1700000100, Name: "Доставка дивана",
		}}}},
		{"lead_status_dp_minimal.txt", WebhookPayload{AccountID: 31500227, Subdomain: "dostavka-pro", Leads: []LeadEvent{{
			Kind: WebhookStatus, LeadID: 52004417, StatusID: 61200314, PipelineID: 7100552, OldStatusID: 61200311, OldPipelineID: 7100550,
		}}}},
		{"lead_status_decoded_form.txt", WebhookPayload{Subdomain: "sborka", Leads: []LeadEvent{{
			Kind: WebhookStatus, LeadID: 18800412, StatusID: StatusWon, PipelineID: 1900321, OldStatusID: 27300114,
			ResponsibleUserID: 3300125, ModifiedUserID: 3300126, LastModified: 1560000123, Name: "Сборка шкафа: Купе 2 двери",
		}}}},
		{"lead_update.txt", WebhookPayload{Subdomain: "mebelgrad", Leads: []LeadEvent{{
			Kind: WebhookUpdate, LeadID: 41275533, StatusID: 33109210, PipelineID: 3820133,
			ResponsibleUserID: 5537719, ModifiedUserID: 5537719, LastModified: 1700000200, Name: `Some <b>bold</b> & "quoted" lead`,
		}}}},
		{"lead_responsible.txt", WebhookPayload{Subdomain: "mebelgrad", Leads: []LeadEvent{{
			Kind: WebhookResponsible, LeadID: 41275533, StatusID: 33109210, PipelineID: 3820133,
			ResponsibleUserID: 5537730, ModifiedUserID: 5537701, LastModified: 1700000300, Name: "Test lead",
		}}}},
		{"lead_multi_sparse.txt", WebhookPayload{AccountID: 29980011, Subdomain: "mebelgrad", Leads: []LeadEvent{
			{Kind: WebhookAdd, LeadID: 100, Name: "Новый заказ", StatusID: 33109207, PipelineID: 3820133, ResponsibleUserID: 5537719},
			{Kind: WebhookStatus, LeadID: 301, StatusID: StatusLost, PipelineID: 3820133, OldStatusID: 33109210, LastModified: 1700000400},
			{Kind: WebhookStatus, LeadID: 303, StatusID: StatusWon, PipelineID: 3820133, OldStatusID: 33109210},
			{Kind: WebhookUpdate, LeadID: 202, Name: "update two"},
			{Kind: WebhookUpdate, LeadID: 700, Name: "update seven", StatusID: 33109210, PipelineID: 3820133},
			{Kind: WebhookDelete, LeadID: 999, StatusID: 33109207, PipelineID: 3820133},
			{Kind: WebhookRestore, LeadID: 998, StatusID: 33109207, PipelineID: 3820133},
		}}},
		{"contact_update_only.txt", WebhookPayload{Subdomain: "mebelgrad"}},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "webhooks", "*.txt"))
	if len(files) != len(tests) {
		t.Errorf("%d fixtures on disk, %d in the table: every fixture needs expectations", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseWebhook(readWebhookFixture(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func leadKeys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "leads[add][%d][id]=%d&", i, i+1)
	}
	return b.String()
}

func TestParseWebhookMalformed(t *testing.T) {
	deep := "x" + strings.Repeat("[a]", maxWebhookNesting+1) + "=1"
	tests := []struct {
		name, body, wantErr string
	}{
		{"missing id", "leads[status][0][status_id]=142", "leads[status][0]: missing id"},
		{"only nested data", "leads[status][0][custom_fields][0][id]=5", "missing id"},
		{"empty id", "leads[status][0][id]=", "id: empty"},
		{"zero id", "leads[status][0][id]=0", "must be positive"},
		{"negative id", "leads[status][0][id]=-5", "not a non-negative integer"},
		{"plus-signed id", "leads[status][0][id]=%2B5", "not a non-negative integer"},
		{"fractional id", "leads[status][0][id]=5.0", "not a non-negative integer"},
		{"huge id", "leads[status][0][id]=99999999999999999999", "out of range"},
		{"bad status id", "leads[status][0][id]=1&leads[status][0][status_id]=abc", "status_id"},
		{"bad account id", "account[id]=x1&leads[status][0][id]=1", "account[id]"},
		{"second entry bad", "leads[status][0][id]=1&leads[status][5][id]=x", "leads[status][5]"},
		{"non-numeric index", "leads[status][first][id]=1", "index"},
		{"append index", "leads[status][][id]=1", "index"},
		{"no field", "leads[status][0]=1", "expected leads[status][N][field]"},
		{"kind scalar", "leads[status]=1", "expected leads[status][N][field]"},
		{"unclosed bracket", "leads[status][0][id=1", "malformed"},
		{"junk between brackets", "leads[status]x[0][id]=1", "malformed"},
		{"too deep", deep, "nested deeper"},
		{"too deep lead", "leads[add][0][custom_fields][0][values][0][value][a][b]=1&leads[add][0][id]=1", "nested deeper"},
		{"key too long", "x" + strings.Repeat("y", maxWebhookKeyLen) + "=1", "key longer"},
		{"encoded key too long", strings.Repeat("%41", maxWebhookKeyLen+1) + "=1", "key longer"},
		{"too many leads", leadKeys(maxWebhookLeads + 1), "more than 500"},
		{"body too big", "a=" + strings.Repeat("b", MaxWebhookBody), "body is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWebhook([]byte(tt.body))
			if err == nil {
				t.Fatalf("no error, got %+v", got)
			}
			if !errors.Is(err, ErrBadWebhook) {
				t.Fatalf("%v does not wrap ErrBadWebhook", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseWebhookLenient(t *testing.T) {
	tests := []struct {
		name, body string
		want       WebhookPayload
	}{
		{"empty body", "", WebhookPayload{}},
		{"stray separators", "&&=&leads[status][0][id]=7&&", WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7}}}},
		{"unknown lead kind", "leads[note][0][x]=1&leads[status][0][id]=7", WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7}}}},
		{"malformed unrelated key", "contacts[update][0][id=1&tags]]=2&[x]=3&leads[status][0][id]=7",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7}}}},
		{"bad escapes stay literal", "leads[status][0][id]=7&leads[status][0][name]=50%+off%zz%4",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7, Name: "50% off%zz%4"}}}},
		{"invalid utf-8 name", "leads[status][0][id]=7&leads[status][0][name]=a%FFb",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7, Name: "a\uFFFDb"}}}},
		{"zero and empty secondary ids are absent", "leads[status][0][id]=7&leads[status][0][modified_user_id]=0&leads[status][0][old_status_id]=",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7}}}},
		{"bad timestamp is dropped", "leads[status][0][id]=7&leads[status][0][last_modified]=yesterday",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7}}}},
		{"updated_at fallback", "leads[status][0][id]=7&leads[status][0][updated_at]=1700000000",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 7, LastModified: 1700000000}}}},
		{"last duplicate wins", "leads[status][0][id]=x&leads[status][0][id]=8",
			WebhookPayload{Leads: []LeadEvent{{Kind: WebhookStatus, LeadID: 8}}}},
		{"exactly 500 leads", leadKeys(maxWebhookLeads), WebhookPayload{}},
		{"nesting at the limit", "x" + strings.Repeat("[a]", maxWebhookNesting) + "=1", WebhookPayload{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWebhook([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "exactly 500 leads" {
				if len(got.Leads) != maxWebhookLeads || got.Leads[0].LeadID != 1 || got.Leads[499].LeadID != 500 {
					t.Fatalf("got %d leads, first/last out of order", len(got.Leads))
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseWebhook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "webhooks", "*.txt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("leads[status][0][id]=1&leads[status][3][id]=2&account[id]=5"))
	f.Add([]byte("leads[add][0][custom_fields][0][values][0][value][a]=%zz&leads[add][0][id]=+1"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseWebhook(body)
		if err != nil {
			if !errors.Is(err, ErrBadWebhook) {
				t.Fatalf("error %v does not wrap ErrBadWebhook", err)
			}
			return
		}
		if len(p.Leads) > maxWebhookLeads {
			t.Fatalf("%d leads exceed the limit", len(p.Leads))
		}
		for _, ev := range p.Leads {
			if ev.LeadID <= 0 {
				t.Fatalf("event without a lead id: %+v", ev)
			}
		}
		if p.AccountID < 0 {
			t.Fatalf("negative account id %d", p.AccountID)
		}
	})
}

func TestParseWebhookTrailingNewline(t *testing.T) {
	p, err := ParseWebhook([]byte("leads[status][0][id]=7&account[subdomain]=acme\r\n"))
	if err != nil || p.Subdomain != "acme" {
		t.Fatalf("got %+v, %v", p, err)
	}
}
