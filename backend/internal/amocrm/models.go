package amocrm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Account is GET /api/v4/account.
type Account struct {
	ID             int64  `json:"id"`
	Name           string `json:"name"`
	Subdomain      string `json:"subdomain"`
	Currency       string `json:"currency"`
	CurrencySymbol string `json:"currency_symbol"`
	Country        string `json:"country"`
	Language       string `json:"language"`
	CurrentUserID  int64  `json:"current_user_id"`
}

// Pipeline is one sales pipeline with its statuses (from `_embedded.statuses`).
type Pipeline struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Sort     int      `json:"sort"`
	IsMain   bool     `json:"is_main"`
	Statuses []Status `json:"-"`
}

func (p *Pipeline) UnmarshalJSON(b []byte) error {
	type plain Pipeline
	var aux struct {
		plain
		Embedded struct {
			Statuses []Status `json:"statuses"`
		} `json:"_embedded"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*p = Pipeline(aux.plain)
	p.Statuses = aux.Embedded.Statuses
	return nil
}

// Well-known status IDs shared by every pipeline.
const (
	StatusWon  int64 = 142
	StatusLost int64 = 143
)

// Status is a pipeline stage. Type 1 is the "unsorted" stage.
type Status struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	Sort       int    `json:"sort"`
	Color      string `json:"color"`
	Type       int    `json:"type"`
	PipelineID int64  `json:"pipeline_id"`
	IsEditable bool   `json:"is_editable"`
}

// Lead mirrors the fields of a v4 lead that amoDispatch uses. Timestamps are
// Unix seconds as in the API; 0 means null.
type Lead struct {
	ID                 int64              `json:"id"`
	Name               string             `json:"name"`
	Price              int64              `json:"price"`
	StatusID           int64              `json:"status_id"`
	PipelineID         int64              `json:"pipeline_id"`
	ResponsibleUserID  int64              `json:"responsible_user_id"`
	CreatedAt          int64              `json:"created_at"`
	UpdatedAt          int64              `json:"updated_at"`
	ClosedAt           int64              `json:"closed_at"`
	ClosestTaskAt      int64              `json:"closest_task_at"`
	IsDeleted          bool               `json:"is_deleted"`
	AccountID          int64              `json:"account_id"`
	CustomFieldsValues []CustomFieldValue `json:"custom_fields_values"`
	// Contacts come from `_embedded.contacts` and are only present when the
	// lead was requested with=contacts.
	Contacts []LeadContact `json:"-"`
}

func (l *Lead) UnmarshalJSON(b []byte) error {
	type plain Lead
	var aux struct {
		plain
		Embedded struct {
			Contacts []LeadContact `json:"contacts"`
		} `json:"_embedded"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*l = Lead(aux.plain)
	l.Contacts = aux.Embedded.Contacts
	return nil
}

// MainContactID returns the contact flagged is_main, else the first one, else 0.
func (l Lead) MainContactID() int64 {
	for _, c := range l.Contacts {
		if c.IsMain {
			return c.ID
		}
	}
	if len(l.Contacts) > 0 {
		return l.Contacts[0].ID
	}
	return 0
}

// LeadContact is a contact link in `_embedded.contacts` of a lead.
type LeadContact struct {
	ID     int64 `json:"id"`
	IsMain bool  `json:"is_main"`
}

// CustomFieldValue is one entry of custom_fields_values, used both when reading
// and when writing. A nil Values slice is sent as `"values": null`, which is how
// amoCRM clears a field.
type CustomFieldValue struct {
	FieldID   int64             `json:"field_id,omitempty"`
	FieldName string            `json:"field_name,omitempty"`
	FieldCode string            `json:"field_code,omitempty"`
	FieldType string            `json:"field_type,omitempty"`
	Values    []CustomFieldItem `json:"values"`
}

// CustomFieldItem is one value of a custom field. Value holds whatever JSON
// type the field uses (string, float64 for numbers/dates, bool for checkboxes).
type CustomFieldItem struct {
	Value    any    `json:"value,omitempty"`
	EnumID   int64  `json:"enum_id,omitempty"`
	EnumCode string `json:"enum_code,omitempty"`
}

func (it *CustomFieldItem) UnmarshalJSON(b []byte) error {
	var aux struct {
		Value    any    `json:"value"`
		EnumID   int64  `json:"enum_id"`
		EnumCode string `json:"enum_code"`
		Enum     string `json:"enum"` // older responses name the code "enum"
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	it.Value, it.EnumID, it.EnumCode = aux.Value, aux.EnumID, aux.EnumCode
	if it.EnumCode == "" {
		it.EnumCode = aux.Enum
	}
	return nil
}

// String renders Value for display; numbers keep their integer form.
func (it CustomFieldItem) String() string {
	switch v := it.Value.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Contact is GET /api/v4/contacts/{id}.
type Contact struct {
	ID                 int64              `json:"id"`
	Name               string             `json:"name"`
	FirstName          string             `json:"first_name"`
	LastName           string             `json:"last_name"`
	ResponsibleUserID  int64              `json:"responsible_user_id"`
	CreatedAt          int64              `json:"created_at"`
	UpdatedAt          int64              `json:"updated_at"`
	CustomFieldsValues []CustomFieldValue `json:"custom_fields_values"`
}

// Phones returns the values of the system PHONE field, in API order.
func (c Contact) Phones() []string { return c.fieldStrings("PHONE") }

// Emails returns the values of the system EMAIL field, in API order.
func (c Contact) Emails() []string { return c.fieldStrings("EMAIL") }

func (c Contact) fieldStrings(code string) []string {
	var out []string
	for _, f := range c.CustomFieldsValues {
		if f.FieldCode != code {
			continue
		}
		for _, v := range f.Values {
			if s := v.String(); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// CustomField is a lead custom field definition. ID is ignored when creating.
type CustomField struct {
	ID        int64             `json:"id,omitempty"`
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Code      string            `json:"code,omitempty"`
	Sort      int               `json:"sort,omitempty"`
	IsAPIOnly bool              `json:"is_api_only,omitempty"`
	Enums     []CustomFieldEnum `json:"enums,omitempty"`
}

// CustomFieldEnum is a choice of a select/multiselect/radiobutton field.
type CustomFieldEnum struct {
	ID    int64  `json:"id,omitempty"`
	Value string `json:"value"`
	Sort  int    `json:"sort,omitempty"`
}

// User is an amoCRM account user.
type User struct {
	ID     int64      `json:"id"`
	Name   string     `json:"name"`
	Email  string     `json:"email"`
	Lang   string     `json:"lang"`
	Rights UserRights `json:"rights"`
}

// UserRights holds the flags amoDispatch cares about.
type UserRights struct {
	IsAdmin  bool `json:"is_admin"`
	IsFree   bool `json:"is_free"`
	IsActive bool `json:"is_active"`
}

// Note is a lead note.
type Note struct {
	ID        int64      `json:"id"`
	EntityID  int64      `json:"entity_id"`
	NoteType  string     `json:"note_type"`
	Params    NoteParams `json:"params"`
	CreatedBy int64      `json:"created_by"`
	CreatedAt int64      `json:"created_at"`
}

// NoteParams carries the text of common notes.
type NoteParams struct {
	Text string `json:"text,omitempty"`
}

// Task is an amoCRM task (a to-do with a deadline for a user), bound to a lead.
type Task struct {
	ID                int64  `json:"id,omitempty"`
	EntityID          int64  `json:"entity_id,omitempty"`
	EntityType        string `json:"entity_type,omitempty"`
	TaskTypeID        int64  `json:"task_type_id,omitempty"`
	Text              string `json:"text"`
	CompleteTill      int64  `json:"complete_till"`
	ResponsibleUserID int64  `json:"responsible_user_id,omitempty"`
	IsCompleted       bool   `json:"is_completed,omitempty"`
	CreatedAt         int64  `json:"created_at,omitempty"`
}

// TaskFollowUp is amoCRM's built-in "follow-up" (Связаться) task type.
const TaskFollowUp int64 = 1

// LeadUpdate is a partial lead update: only non-nil / non-empty fields are sent.
type LeadUpdate struct {
	ID                 int64              `json:"-"`
	Name               *string            `json:"name,omitempty"`
	Price              *int64             `json:"price,omitempty"`
	StatusID           *int64             `json:"status_id,omitempty"`
	PipelineID         *int64             `json:"pipeline_id,omitempty"`
	ResponsibleUserID  *int64             `json:"responsible_user_id,omitempty"`
	CustomFieldsValues []CustomFieldValue `json:"custom_fields_values,omitempty"`
}

// Ptr is a convenience for filling LeadUpdate fields.
func Ptr[T any](v T) *T { return &v }

// LeadFilter selects leads for ListLeads. Statuses entries are OR-ed.
type LeadFilter struct {
	Statuses     []StatusFilter
	IDs          []int64
	WithContacts bool
	// UpdatedFrom, when set, lists only deals changed since then
	// (filter[updated_at][from]).
	UpdatedFrom time.Time
}

// StatusFilter is one `filter[statuses][i]` pair.
type StatusFilter struct {
	PipelineID int64
	StatusID   int64
}

// Webhook is an account webhook subscription.
type Webhook struct {
	ID          int64    `json:"id"`
	Destination string   `json:"destination"`
	Settings    []string `json:"settings"`
	Disabled    bool     `json:"disabled"`
	Sort        int      `json:"sort"`
	CreatedAt   int64    `json:"created_at"`
	CreatedBy   int64    `json:"created_by"`
	AccountID   int64    `json:"account_id"`
}
