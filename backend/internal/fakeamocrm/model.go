package fakeamocrm

import (
	"fmt"
	"slices"
	"time"
)

// System statuses that amoCRM adds to every pipeline; their ids are the same
// in every pipeline of every account, so a status is only identified by the
// (pipeline_id, status_id) pair.
const (
	StatusWon  int64 = 142
	StatusLost int64 = 143
)

// Status is a pipeline stage. Type 1 marks the "Неразобранное" (unsorted)
// stage, as in amoCRM.
type Status struct {
	ID         int64
	Name       string
	Sort       int
	Color      string
	Type       int
	IsEditable bool
}

// Pipeline is a leads pipeline ("воронка").
type Pipeline struct {
	ID        int64
	Name      string
	Sort      int
	IsMain    bool
	IsArchive bool
	Statuses  []Status
}

// User is an amoCRM user of one account.
type User struct {
	ID       int64
	Name     string
	Email    string
	Lang     string
	IsAdmin  bool
	Inactive bool
}

// Enum is one option of a select-like custom field (or a PHONE/EMAIL kind
// such as WORK/MOB, where Code carries the enum_code).
type Enum struct {
	ID    int64
	Value string
	Code  string
	Sort  int
}

// CustomField is a lead custom field definition.
type CustomField struct {
	ID        int64
	Name      string
	Type      string // text, numeric, textarea, select, multiselect, checkbox, date, url, ...
	Code      string
	Sort      int
	Enums     []Enum
	IsAPIOnly bool
}

// FieldValue is one element of custom_fields_values[].values.
type FieldValue struct {
	Value    any
	EnumID   int64
	EnumCode string
}

// CustomFieldValue is one element of custom_fields_values. When seeding,
// FieldCode may be used instead of FieldID.
type CustomFieldValue struct {
	FieldID   int64
	FieldCode string
	Values    []FieldValue
}

// ContactLink ties a lead to a contact (_embedded.contacts[] of a lead).
type ContactLink struct {
	ID     int64
	IsMain bool
}

// Lead is the state of a deal. Zero timestamps/authors are filled on insert.
type Lead struct {
	ID                 int64
	Name               string
	Price              int64
	StatusID           int64
	PipelineID         int64
	ResponsibleUserID  int64
	CreatedBy          int64
	UpdatedBy          int64
	CreatedAt          time.Time
	UpdatedAt          time.Time
	ClosedAt           time.Time
	CustomFieldsValues []CustomFieldValue
	Contacts           []ContactLink
	Deleted            bool
}

// Contact is a contact. Phones/Emails are rendered as the PHONE/EMAIL
// multitext custom fields; FieldValue.EnumCode is WORK, MOB, HOME, ... for
// phones and WORK, PRIV, OTHER for e-mails (WORK if empty).
type Contact struct {
	ID                int64
	Name              string
	FirstName         string
	LastName          string
	ResponsibleUserID int64
	Phones            []FieldValue
	Emails            []FieldValue
	CreatedAt         time.Time
	UpdatedAt         time.Time
	Deleted           bool
}

// AccountSpec seeds one account. Everything except Subdomain is optional.
type AccountSpec struct {
	ID        int64
	Subdomain string
	Name      string
	Kommo     bool   // account lives on <sub>.kommo.com instead of <sub>.amocrm.ru
	Currency  string // default RUB
	Country   string // default RU
	Language  string // ru or en, default ru
	// Timezone is the account's time zone (datetime_settings), an IANA
	// name; default Europe/Moscow.
	Timezone string
	// APIUserID is the user on whose behalf the integration acts (the one who
	// installed it): it becomes updated_by / modified_user_id of API changes.
	// Default: the first user.
	APIUserID  int64
	Pipelines  []Pipeline
	Users      []User
	LeadFields []CustomField
	Contacts   []Contact
	Leads      []Lead
}

// Account is a handle to a seeded account. Its getters return copies.
type Account struct {
	ID        int64
	Subdomain string
	Domain    string // e.g. "acme.amocrm.ru"
	s         *Server
}

// Pipelines returns the account pipelines, including the 142/143 statuses.
func (a *Account) Pipelines() []Pipeline {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	acc := a.s.accounts[a.ID]
	out := make([]Pipeline, len(acc.pipelines))
	for i, p := range acc.pipelines {
		out[i] = clonePipeline(p)
	}
	return out
}

// Users returns the account users.
func (a *Account) Users() []User {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return slices.Clone(a.s.accounts[a.ID].users)
}

// LeadFields returns the lead custom field definitions (including ones
// created through POST /api/v4/leads/custom_fields).
func (a *Account) LeadFields() []CustomField {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	acc := a.s.accounts[a.ID]
	out := make([]CustomField, len(acc.leadFields))
	for i, f := range acc.leadFields {
		out[i] = *f
		out[i].Enums = slices.Clone(f.Enums)
	}
	return out
}

// MainPipeline returns the pipeline marked is_main.
func (a *Account) MainPipeline() Pipeline {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return clonePipeline(a.s.accounts[a.ID].mainPipeline())
}

// APIUserID is the user id the integration acts as.
func (a *Account) APIUserID() int64 {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return a.s.accounts[a.ID].apiUserID
}

// account is the mutable per-account state; guarded by Server.mu.
type account struct {
	id        int64
	subdomain string
	domain    string
	name      string
	kommo     bool
	currency  string
	country   string
	language  string
	timezone  string
	createdAt time.Time
	apiUserID int64

	pipelines  []*Pipeline
	users      []User
	leadFields []*CustomField
	phoneField CustomField
	emailField CustomField

	leads    map[int64]*Lead
	contacts map[int64]*Contact
	notes    []Note
	tasks    []Task
	webhooks []*Webhook

	leadUpdates []LeadUpdate

	refreshOK       int
	refreshAttempts int

	rateWindow []time.Time
	rateHits   []time.Time
}

func clonePipeline(p *Pipeline) Pipeline {
	c := *p
	c.Statuses = slices.Clone(p.Statuses)
	return c
}

func cloneLead(l *Lead) Lead {
	c := *l
	c.Contacts = slices.Clone(l.Contacts)
	c.CustomFieldsValues = cloneCFV(l.CustomFieldsValues)
	return c
}

func cloneCFV(v []CustomFieldValue) []CustomFieldValue {
	if v == nil {
		return nil
	}
	out := make([]CustomFieldValue, len(v))
	for i, f := range v {
		out[i] = f
		out[i].Values = slices.Clone(f.Values)
	}
	return out
}

func cloneContact(c *Contact) Contact {
	o := *c
	o.Phones = slices.Clone(c.Phones)
	o.Emails = slices.Clone(c.Emails)
	return o
}

func (a *account) mainPipeline() *Pipeline {
	for _, p := range a.pipelines {
		if p.IsMain {
			return p
		}
	}
	return a.pipelines[0]
}

func (a *account) pipeline(id int64) *Pipeline {
	for _, p := range a.pipelines {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (p *Pipeline) hasStatus(id int64) bool {
	for _, s := range p.Statuses {
		if s.ID == id {
			return true
		}
	}
	return false
}

// firstWorkingStatus is where amoCRM puts a lead that enters a pipeline
// without an explicit status: the first stage after "unsorted".
func (p *Pipeline) firstWorkingStatus() int64 {
	for _, s := range p.Statuses {
		if s.Type != 1 && s.ID != StatusWon && s.ID != StatusLost {
			return s.ID
		}
	}
	return p.Statuses[0].ID
}

// SetUserAdmin changes a user's rights.is_admin, as an account admin does in
// amoCRM's user settings; the users API shows the change at once.
func (s *Server) SetUserAdmin(accountID, userID int64, admin bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc, ok := s.accounts[accountID]
	if !ok {
		return fmt.Errorf("fakeamocrm: no account %d", accountID)
	}
	for i := range acc.users {
		if acc.users[i].ID == userID {
			acc.users[i].IsAdmin = admin
			return nil
		}
	}
	return fmt.Errorf("fakeamocrm: account %d has no user %d", accountID, userID)
}

func (a *account) user(id int64) bool {
	for _, u := range a.users {
		if u.ID == id {
			return true
		}
	}
	return false
}

func (a *account) leadField(id int64) *CustomField {
	for _, f := range a.leadFields {
		if f.ID == id {
			return f
		}
	}
	return nil
}

func (a *account) leadFieldByCode(code string) *CustomField {
	if code == "" {
		return nil
	}
	for _, f := range a.leadFields {
		if f.Code == code {
			return f
		}
	}
	return nil
}

func (a *account) liveLead(id int64) *Lead {
	l := a.leads[id]
	if l == nil || l.Deleted {
		return nil
	}
	return l
}

func (a *account) liveContact(id int64) *Contact {
	c := a.contacts[id]
	if c == nil || c.Deleted {
		return nil
	}
	return c
}

// newID hands out ids that never collide across accounts, so a lead id of
// one account can never accidentally resolve in another one.
func (s *Server) newID() int64 {
	s.nextID++
	return s.nextID
}

func (s *Server) reserveID(id int64) {
	if id > s.nextID {
		s.nextID = id
	}
}

// AddAccount seeds an account and returns its handle. It panics on an
// inconsistent spec (e.g. a lead in an unknown status) because that is a bug
// in the test, not a condition to handle.
func (s *Server) AddAccount(spec AccountSpec) *Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()

	if spec.Subdomain == "" {
		panic("fakeamocrm: AccountSpec.Subdomain is required")
	}
	s.reserveAllIDs(spec)
	if spec.ID == 0 {
		spec.ID = s.newID()
	}
	if _, dup := s.accounts[spec.ID]; dup {
		panic(fmt.Sprintf("fakeamocrm: account %d already exists", spec.ID))
	}
	acc := &account{
		id:        spec.ID,
		subdomain: spec.Subdomain,
		name:      def(spec.Name, spec.Subdomain),
		kommo:     spec.Kommo,
		currency:  def(spec.Currency, "RUB"),
		country:   def(spec.Country, "RU"),
		language:  def(spec.Language, "ru"),
		timezone:  def(spec.Timezone, "Europe/Moscow"),
		createdAt: now.Add(-365 * 24 * time.Hour),
		leads:     map[int64]*Lead{},
		contacts:  map[int64]*Contact{},
	}
	if spec.Kommo {
		acc.domain = spec.Subdomain + ".kommo.com"
	} else {
		acc.domain = spec.Subdomain + ".amocrm.ru"
	}

	users := slices.Clone(spec.Users)
	if len(users) == 0 {
		users = []User{{Name: "Администратор", Email: "admin@" + acc.domain, IsAdmin: true}}
	}
	for i := range users {
		if users[i].ID == 0 {
			users[i].ID = s.newID()
		}
		if users[i].Lang == "" {
			users[i].Lang = acc.language
		}
	}
	acc.users = users
	acc.apiUserID = spec.APIUserID
	if acc.apiUserID == 0 {
		acc.apiUserID = users[0].ID
	}

	pipes := spec.Pipelines
	if len(pipes) == 0 {
		pipes = []Pipeline{{Name: "Воронка", Statuses: []Status{
			{Name: "Неразобранное", Type: 1, Color: "#c1c1c1"},
			{Name: "Первичный контакт", IsEditable: true},
			{Name: "Переговоры", IsEditable: true},
			{Name: "Принимают решение", IsEditable: true},
			{Name: "Согласование договора", IsEditable: true},
		}}}
	}
	hasMain := false
	for i, p := range pipes {
		p := clonePipeline(&p)
		if p.ID == 0 {
			p.ID = s.newID()
		}
		if p.Sort == 0 {
			p.Sort = i + 1
		}
		hasMain = hasMain || p.IsMain
		var sts []Status
		for j, st := range p.Statuses {
			if st.ID == StatusWon || st.ID == StatusLost {
				continue
			}
			if st.ID == 0 {
				st.ID = s.newID()
			}
			if st.Sort == 0 {
				st.Sort = (j + 1) * 10
			}
			if st.Color == "" {
				st.Color = "#99ccff"
			}
			sts = append(sts, st)
		}
		sts = append(sts,
			Status{ID: StatusWon, Name: "Успешно реализовано", Sort: 10000, Color: "#CCFF66"},
			Status{ID: StatusLost, Name: "Закрыто и не реализовано", Sort: 11000, Color: "#D5D8DB"},
		)
		p.Statuses = sts
		acc.pipelines = append(acc.pipelines, &p)
	}
	if !hasMain {
		acc.pipelines[0].IsMain = true
	}

	for i, f := range spec.LeadFields {
		f.Enums = slices.Clone(f.Enums)
		if f.ID == 0 {
			f.ID = s.newID()
		}
		if f.Type == "" {
			f.Type = "text"
		}
		if f.Sort == 0 {
			f.Sort = 500 + i
		}
		for j := range f.Enums {
			if f.Enums[j].ID == 0 {
				f.Enums[j].ID = s.newID()
			}
		}
		acc.leadFields = append(acc.leadFields, &f)
	}

	acc.phoneField = CustomField{ID: s.newID(), Name: "Телефон", Type: "multitext", Code: "PHONE", Sort: 4}
	for i, code := range []string{"WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"} {
		acc.phoneField.Enums = append(acc.phoneField.Enums, Enum{ID: s.newID(), Value: code, Code: code, Sort: (i + 1) * 2})
	}
	acc.emailField = CustomField{ID: s.newID(), Name: "Email", Type: "multitext", Code: "EMAIL", Sort: 6}
	for i, code := range []string{"WORK", "PRIV", "OTHER"} {
		acc.emailField.Enums = append(acc.emailField.Enums, Enum{ID: s.newID(), Value: code, Code: code, Sort: (i + 1) * 2})
	}

	s.accounts[acc.id] = acc
	for _, c := range spec.Contacts {
		if _, err := s.insertContactLocked(acc, c); err != nil {
			panic("fakeamocrm: seeding contact: " + err.Error())
		}
	}
	for _, l := range spec.Leads {
		if _, err := s.insertLeadLocked(acc, l); err != nil {
			panic("fakeamocrm: seeding lead: " + err.Error())
		}
	}
	return &Account{ID: acc.id, Subdomain: acc.subdomain, Domain: acc.domain, s: s}
}

// reserveAllIDs bumps the id counter past every explicit id of the spec so
// generated ids never collide with seeded ones.
func (s *Server) reserveAllIDs(spec AccountSpec) {
	s.reserveID(spec.ID)
	for _, u := range spec.Users {
		s.reserveID(u.ID)
	}
	for _, p := range spec.Pipelines {
		s.reserveID(p.ID)
		for _, st := range p.Statuses {
			s.reserveID(st.ID)
		}
	}
	for _, f := range spec.LeadFields {
		s.reserveID(f.ID)
		for _, e := range f.Enums {
			s.reserveID(e.ID)
		}
	}
	for _, c := range spec.Contacts {
		s.reserveID(c.ID)
	}
	for _, l := range spec.Leads {
		s.reserveID(l.ID)
	}
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// normalizeCFV resolves FieldCode to FieldID and enum codes/values to enum
// ids, so stored values always look like what the API returns.
func (acc *account) normalizeCFV(in []CustomFieldValue) ([]CustomFieldValue, error) {
	out := cloneCFV(in)
	for i := range out {
		f := acc.leadField(out[i].FieldID)
		if f == nil {
			f = acc.leadFieldByCode(out[i].FieldCode)
		}
		if f == nil {
			return nil, fmt.Errorf("unknown lead custom field %d/%q", out[i].FieldID, out[i].FieldCode)
		}
		out[i].FieldID, out[i].FieldCode = f.ID, f.Code
		for j := range out[i].Values {
			if err := resolveEnum(f, &out[i].Values[j]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func resolveEnum(f *CustomField, v *FieldValue) error {
	if len(f.Enums) == 0 {
		return nil
	}
	for _, e := range f.Enums {
		if (v.EnumID != 0 && e.ID == v.EnumID) ||
			(v.EnumID == 0 && v.EnumCode != "" && e.Code == v.EnumCode) ||
			(v.EnumID == 0 && v.EnumCode == "" && fmt.Sprint(v.Value) == e.Value) {
			v.EnumID, v.EnumCode, v.Value = e.ID, e.Code, e.Value
			return nil
		}
	}
	return fmt.Errorf("field %d has no enum %d/%q/%v", f.ID, v.EnumID, v.EnumCode, v.Value)
}

func (s *Server) insertLeadLocked(acc *account, l Lead) (Lead, error) {
	now := s.now()
	l = cloneLead(&l)
	if l.ID == 0 {
		l.ID = s.newID()
	}
	s.reserveID(l.ID)
	if old := acc.leads[l.ID]; old != nil && !old.Deleted {
		return Lead{}, fmt.Errorf("lead %d already exists", l.ID)
	}
	var p *Pipeline
	if l.PipelineID == 0 {
		p = acc.mainPipeline()
	} else if p = acc.pipeline(l.PipelineID); p == nil {
		return Lead{}, fmt.Errorf("unknown pipeline %d", l.PipelineID)
	}
	l.PipelineID = p.ID
	if l.StatusID == 0 {
		l.StatusID = p.firstWorkingStatus()
	} else if !p.hasStatus(l.StatusID) {
		return Lead{}, fmt.Errorf("status %d is not in pipeline %d", l.StatusID, p.ID)
	}
	if l.ResponsibleUserID == 0 {
		l.ResponsibleUserID = acc.users[0].ID
	} else if !acc.user(l.ResponsibleUserID) {
		return Lead{}, fmt.Errorf("unknown user %d", l.ResponsibleUserID)
	}
	if l.CreatedBy == 0 {
		l.CreatedBy = l.ResponsibleUserID
	}
	if l.UpdatedBy == 0 {
		l.UpdatedBy = l.CreatedBy
	}
	if l.CreatedAt.IsZero() {
		l.CreatedAt = now
	}
	if l.UpdatedAt.IsZero() {
		l.UpdatedAt = l.CreatedAt
	}
	if l.Name == "" {
		l.Name = fmt.Sprintf("Сделка #%d", l.ID)
	}
	if isClosed(l.StatusID) && l.ClosedAt.IsZero() {
		l.ClosedAt = l.UpdatedAt
	}
	cfv, err := acc.normalizeCFV(l.CustomFieldsValues)
	if err != nil {
		return Lead{}, err
	}
	l.CustomFieldsValues = cfv
	mainSeen := false
	for i, c := range l.Contacts {
		if acc.liveContact(c.ID) == nil {
			return Lead{}, fmt.Errorf("unknown contact %d", c.ID)
		}
		mainSeen = mainSeen || c.IsMain
		if i == len(l.Contacts)-1 && !mainSeen {
			l.Contacts[0].IsMain = true
		}
	}
	l.Deleted = false
	stored := l
	acc.leads[l.ID] = &stored
	return cloneLead(&stored), nil
}

func (s *Server) insertContactLocked(acc *account, c Contact) (Contact, error) {
	now := s.now()
	c = cloneContact(&c)
	if c.ID == 0 {
		c.ID = s.newID()
	}
	s.reserveID(c.ID)
	if old := acc.contacts[c.ID]; old != nil && !old.Deleted {
		return Contact{}, fmt.Errorf("contact %d already exists", c.ID)
	}
	if c.ResponsibleUserID == 0 {
		c.ResponsibleUserID = acc.users[0].ID
	} else if !acc.user(c.ResponsibleUserID) {
		return Contact{}, fmt.Errorf("unknown user %d", c.ResponsibleUserID)
	}
	if c.Name == "" {
		c.Name = joinNonEmpty(c.FirstName, c.LastName)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	if err := acc.normalizeMultitext(&acc.phoneField, c.Phones); err != nil {
		return Contact{}, err
	}
	if err := acc.normalizeMultitext(&acc.emailField, c.Emails); err != nil {
		return Contact{}, err
	}
	stored := c
	acc.contacts[c.ID] = &stored
	return cloneContact(&stored), nil
}

func (acc *account) normalizeMultitext(f *CustomField, vals []FieldValue) error {
	for i := range vals {
		if vals[i].EnumID == 0 && vals[i].EnumCode == "" {
			vals[i].EnumCode = "WORK"
		}
		v := vals[i].Value
		if err := resolveEnum(f, &vals[i]); err != nil {
			return err
		}
		// resolveEnum overwrites Value with the enum label; for multitext the
		// value is the phone/e-mail itself, the enum only tags its kind.
		vals[i].Value = v
	}
	return nil
}

func joinNonEmpty(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += " "
		}
		out += p
	}
	return out
}

func isClosed(status int64) bool { return status == StatusWon || status == StatusLost }
