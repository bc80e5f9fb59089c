package fakeamocrm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ---- rendering -------------------------------------------------------------

func unixOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

func (s *Server) renderCFV(vals []CustomFieldValue, field func(int64) *CustomField) any {
	if len(vals) == 0 {
		return nil // amoCRM sends null, not [], for "no values"
	}
	out := make([]any, 0, len(vals))
	for _, v := range vals {
		f := field(v.FieldID)
		if f == nil {
			continue
		}
		vs := make([]any, 0, len(v.Values))
		for _, x := range v.Values {
			m := map[string]any{"value": x.Value}
			if x.EnumID != 0 {
				m["enum_id"] = x.EnumID
				if x.EnumCode != "" {
					m["enum_code"] = x.EnumCode
				} else {
					m["enum_code"] = nil
				}
			}
			vs = append(vs, m)
		}
		var code any
		if f.Code != "" {
			code = f.Code
		}
		out = append(out, map[string]any{
			"field_id":   f.ID,
			"field_name": f.Name,
			"field_code": code,
			"field_type": f.Type,
			"values":     vs,
		})
	}
	return out
}

func (s *Server) renderLead(acc *account, l *Lead, withContacts bool) map[string]any {
	emb := map[string]any{"tags": []any{}, "companies": []any{}}
	if withContacts {
		cs := make([]any, 0, len(l.Contacts))
		for _, c := range l.Contacts {
			cs = append(cs, map[string]any{
				"id": c.ID, "is_main": c.IsMain,
				"_links": selfLink(s, fmt.Sprintf("/api/v4/contacts/%d", c.ID)),
			})
		}
		emb["contacts"] = cs
	}
	return map[string]any{
		"id":                         l.ID,
		"name":                       l.Name,
		"price":                      l.Price,
		"responsible_user_id":        l.ResponsibleUserID,
		"group_id":                   0,
		"status_id":                  l.StatusID,
		"pipeline_id":                l.PipelineID,
		"loss_reason_id":             nil,
		"created_by":                 l.CreatedBy,
		"updated_by":                 l.UpdatedBy,
		"created_at":                 l.CreatedAt.Unix(),
		"updated_at":                 l.UpdatedAt.Unix(),
		"closed_at":                  unixOrNil(l.ClosedAt),
		"closest_task_at":            nil,
		"is_deleted":                 false,
		"custom_fields_values":       s.renderCFV(l.CustomFieldsValues, acc.leadField),
		"score":                      nil,
		"account_id":                 acc.id,
		"labor_cost":                 nil,
		"is_price_modified_by_robot": false,
		"_links":                     selfLink(s, fmt.Sprintf("/api/v4/leads/%d", l.ID)),
		"_embedded":                  emb,
	}
}

func (s *Server) renderContact(acc *account, c *Contact, withLeads bool) map[string]any {
	var cfv []CustomFieldValue
	if len(c.Phones) > 0 {
		cfv = append(cfv, CustomFieldValue{FieldID: acc.phoneField.ID, Values: c.Phones})
	}
	if len(c.Emails) > 0 {
		cfv = append(cfv, CustomFieldValue{FieldID: acc.emailField.ID, Values: c.Emails})
	}
	field := func(id int64) *CustomField {
		switch id {
		case acc.phoneField.ID:
			return &acc.phoneField
		case acc.emailField.ID:
			return &acc.emailField
		}
		return nil
	}
	emb := map[string]any{"tags": []any{}, "companies": []any{}}
	if withLeads {
		ls := []any{}
		for _, l := range acc.sortedLeads() {
			for _, link := range l.Contacts {
				if link.ID == c.ID {
					ls = append(ls, map[string]any{"id": l.ID, "_links": selfLink(s, fmt.Sprintf("/api/v4/leads/%d", l.ID))})
				}
			}
		}
		emb["leads"] = ls
	}
	return map[string]any{
		"id":                   c.ID,
		"name":                 c.Name,
		"first_name":           c.FirstName,
		"last_name":            c.LastName,
		"responsible_user_id":  c.ResponsibleUserID,
		"group_id":             0,
		"created_by":           c.ResponsibleUserID,
		"updated_by":           c.ResponsibleUserID,
		"created_at":           c.CreatedAt.Unix(),
		"updated_at":           c.UpdatedAt.Unix(),
		"closest_task_at":      nil,
		"is_deleted":           false,
		"is_unsorted":          false,
		"custom_fields_values": s.renderCFV(cfv, field),
		"account_id":           acc.id,
		"_links":               selfLink(s, fmt.Sprintf("/api/v4/contacts/%d", c.ID)),
		"_embedded":            emb,
	}
}

func (s *Server) renderPipeline(acc *account, p *Pipeline) map[string]any {
	sts := make([]any, 0, len(p.Statuses))
	for _, st := range p.Statuses {
		sts = append(sts, map[string]any{
			"id":          st.ID,
			"name":        st.Name,
			"sort":        st.Sort,
			"is_editable": st.IsEditable,
			"pipeline_id": p.ID,
			"color":       st.Color,
			"type":        st.Type,
			"account_id":  acc.id,
			"_links":      selfLink(s, fmt.Sprintf("/api/v4/leads/pipelines/%d/statuses/%d", p.ID, st.ID)),
		})
	}
	return map[string]any{
		"id":             p.ID,
		"name":           p.Name,
		"sort":           p.Sort,
		"is_main":        p.IsMain,
		"is_unsorted_on": true,
		"is_archive":     p.IsArchive,
		"account_id":     acc.id,
		"_links":         selfLink(s, fmt.Sprintf("/api/v4/leads/pipelines/%d", p.ID)),
		"_embedded":      map[string]any{"statuses": sts},
	}
}

func (s *Server) renderField(acc *account, f *CustomField) map[string]any {
	var enums any
	if len(f.Enums) > 0 {
		es := make([]any, 0, len(f.Enums))
		for _, e := range f.Enums {
			m := map[string]any{"id": e.ID, "value": e.Value, "sort": e.Sort}
			if e.Code != "" {
				m["code"] = e.Code
			}
			es = append(es, m)
		}
		enums = es
	}
	var code any
	if f.Code != "" {
		code = f.Code
	}
	return map[string]any{
		"id":                f.ID,
		"name":              f.Name,
		"type":              f.Type,
		"account_id":        acc.id,
		"code":              code,
		"sort":              f.Sort,
		"is_api_only":       f.IsAPIOnly,
		"enums":             enums,
		"group_id":          nil,
		"required_statuses": []any{},
		"is_deletable":      true,
		"is_predefined":     false,
		"entity_type":       "leads",
		"remind":            nil,
		"settings":          nil,
		"_links":            selfLink(s, fmt.Sprintf("/api/v4/leads/custom_fields/%d", f.ID)),
	}
}

func (s *Server) renderUser(u User) map[string]any {
	all := map[string]any{"view": "A", "edit": "A", "add": "A", "delete": "A", "export": "A"}
	return map[string]any{
		"id":    u.ID,
		"name":  u.Name,
		"email": u.Email,
		"lang":  u.Lang,
		"rights": map[string]any{
			"leads":          all,
			"contacts":       all,
			"companies":      all,
			"tasks":          map[string]any{"edit": "A", "delete": "A"},
			"mail_access":    true,
			"catalog_access": true,
			"status_rights":  []any{},
			"is_admin":       u.IsAdmin,
			"is_free":        false,
			"is_active":      !u.Inactive,
			"group_id":       nil,
			"role_id":        nil,
		},
		"_links": selfLink(s, fmt.Sprintf("/api/v4/users/%d", u.ID)),
	}
}

func (s *Server) renderNote(acc *account, n Note) map[string]any {
	return map[string]any{
		"id":                  n.ID,
		"entity_id":           n.EntityID,
		"created_by":          n.CreatedBy,
		"updated_by":          n.CreatedBy,
		"created_at":          n.CreatedAt.Unix(),
		"updated_at":          n.CreatedAt.Unix(),
		"responsible_user_id": n.ResponsibleUserID,
		"group_id":            0,
		"note_type":           n.NoteType,
		"params":              n.Params,
		"account_id":          acc.id,
		"_links":              selfLink(s, fmt.Sprintf("/api/v4/leads/%d/notes/%d", n.EntityID, n.ID)),
	}
}

// ---- query helpers ---------------------------------------------------------

func pageParams(q url.Values) (page, limit int) {
	page, _ = strconv.Atoi(q.Get("page"))
	if page < 1 {
		page = 1
	}
	limit, _ = strconv.Atoi(q.Get("limit"))
	if limit < 1 {
		limit = 50
	}
	if limit > 250 {
		limit = 250 // amoCRM's maximum page size
	}
	return page, limit
}

// paginate slices items and builds amoCRM's _page/_links. Links point at the
// fake (not <sub>.amocrm.ru) so clients that follow "next" stay in-process.
func paginate[T any](s *Server, p string, q url.Values, items []T) ([]T, map[string]any, int) {
	page, limit := pageParams(q)
	from := min((page-1)*limit, len(items))
	to := min(from+limit, len(items))
	link := func(pg int) map[string]any {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("page", strconv.Itoa(pg))
		qq.Set("limit", strconv.Itoa(limit))
		return s.href(p, qq)
	}
	links := map[string]any{"self": link(page)}
	if to < len(items) {
		links["next"] = link(page + 1)
	}
	if page > 1 {
		links["first"] = link(1)
		links["prev"] = link(page - 1)
	}
	return items[from:to], links, page
}

var indexedKey = regexp.MustCompile(`^\[\d*\]$`)

// multiVals collects name=v, name[]=v and name[3]=v, the three spellings PHP
// clients use for arrays, plus comma-separated lists.
func multiVals(q url.Values, name string) []string {
	var out []string
	for k, vs := range q {
		if k != name && (!strings.HasPrefix(k, name) || !indexedKey.MatchString(k[len(name):])) {
			continue
		}
		for _, v := range vs {
			for _, part := range strings.Split(v, ",") {
				if part = strings.TrimSpace(part); part != "" {
					out = append(out, part)
				}
			}
		}
	}
	return out
}

func int64s(vs []string) ([]int64, bool) {
	out := make([]int64, 0, len(vs))
	for _, v := range vs {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

func hasWith(q url.Values, what string) bool {
	for _, w := range multiVals(q, "with") {
		if w == what {
			return true
		}
	}
	return false
}

var statusFilterKey = regexp.MustCompile(`^filter\[statuses\]\[(\d+)\]\[(pipeline_id|status_id)\]$`)

type statusFilter struct{ pipelineID, statusID int64 }

func statusFilters(q url.Values) []statusFilter {
	byIdx := map[string]*statusFilter{}
	var order []string
	for k := range q {
		m := statusFilterKey.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		f := byIdx[m[1]]
		if f == nil {
			f = &statusFilter{}
			byIdx[m[1]] = f
			order = append(order, m[1])
		}
		n, _ := strconv.ParseInt(q.Get(k), 10, 64)
		if m[2] == "pipeline_id" {
			f.pipelineID = n
		} else {
			f.statusID = n
		}
	}
	out := make([]statusFilter, 0, len(order))
	for _, k := range order {
		out = append(out, *byIdx[k])
	}
	return out
}

func rangeFilter(q url.Values, field string) (from, to int64) {
	from, _ = strconv.ParseInt(q.Get("filter["+field+"][from]"), 10, 64)
	to, _ = strconv.ParseInt(q.Get("filter["+field+"][to]"), 10, 64)
	return from, to
}

func pathID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// ---- account / pipelines / users ----------------------------------------------

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request, acc *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sym := map[string]string{"RUB": "₽", "USD": "$", "EUR": "€", "KZT": "₸"}[acc.currency]
	body := map[string]any{
		"id":                         acc.id,
		"name":                       acc.name,
		"subdomain":                  acc.subdomain,
		"created_at":                 acc.createdAt.Unix(),
		"created_by":                 acc.users[0].ID,
		"updated_at":                 acc.createdAt.Unix(),
		"updated_by":                 acc.users[0].ID,
		"current_user_id":            acc.apiUserID,
		"country":                    acc.country,
		"currency":                   acc.currency,
		"currency_symbol":            sym,
		"language":                   acc.language,
		"customers_mode":             "disabled",
		"is_unsorted_on":             true,
		"mobile_feature_version":     0,
		"is_loss_reason_enabled":     true,
		"is_helpbot_enabled":         false,
		"is_technical_account":       false,
		"contact_name_display_order": 1,
		"_links":                     selfLink(s, "/api/v4/account"),
	}
	q := r.URL.Query()
	if hasWith(q, "amojo_id") {
		body["amojo_id"] = fmt.Sprintf("%08x-0000-4000-8000-%012x", acc.id, acc.id)
	}
	if hasWith(q, "version") {
		body["version"] = 1
	}
	if hasWith(q, "datetime_settings") {
		tz, offset := acc.timezone, "+03:00"
		if loc, err := time.LoadLocation(tz); err == nil {
			offset = s.now().In(loc).Format("-07:00")
		}
		body["_embedded"] = map[string]any{"datetime_settings": map[string]any{
			"date_pattern": "d.m.Y H:i", "short_date_pattern": "d.m.Y", "short_time_pattern": "H:i",
			"date_format": "d.m.Y", "time_format": "H:i:s", "timezone": tz, "timezone_offset": offset,
		}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handlePipelines(w http.ResponseWriter, r *http.Request, acc *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]any, 0, len(acc.pipelines))
	for _, p := range acc.pipelines {
		ps = append(ps, s.renderPipeline(acc, p))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_total_items": len(ps),
		"_links":       selfLink(s, "/api/v4/leads/pipelines"),
		"_embedded":    map[string]any{"pipelines": ps},
	})
}

func (s *Server) handlePipeline(w http.ResponseWriter, r *http.Request, acc *account) {
	id, ok := pathID(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *Pipeline
	if ok {
		p = acc.pipeline(id)
	}
	if p == nil {
		noContent(w)
		return
	}
	writeJSON(w, http.StatusOK, s.renderPipeline(acc, p))
}

func (s *Server) handleUsers(w http.ResponseWriter, r *http.Request, acc *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	page, links, pg := paginate(s, "/api/v4/users", q, acc.users)
	if len(page) == 0 {
		noContent(w)
		return
	}
	us := make([]any, 0, len(page))
	for _, u := range page {
		us = append(us, s.renderUser(u))
	}
	_, limit := pageParams(q)
	writeJSON(w, http.StatusOK, map[string]any{
		"_total_items": len(acc.users),
		"_page":        pg,
		"_page_count":  (len(acc.users) + limit - 1) / limit,
		"_links":       links,
		"_embedded":    map[string]any{"users": us},
	})
}

func (s *Server) handleUser(w http.ResponseWriter, r *http.Request, acc *account) {
	id, _ := pathID(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range acc.users {
		if u.ID == id {
			writeJSON(w, http.StatusOK, s.renderUser(u))
			return
		}
	}
	noContent(w)
}

// ---- leads -----------------------------------------------------------------

func (s *Server) handleLead(w http.ResponseWriter, r *http.Request, acc *account) {
	id, ok := pathID(r)
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "Not Found", nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := acc.liveLead(id)
	if l == nil {
		noContent(w)
		return
	}
	writeJSON(w, http.StatusOK, s.renderLead(acc, l, hasWith(r.URL.Query(), "contacts")))
}

func (s *Server) handleLeads(w http.ResponseWriter, r *http.Request, acc *account) {
	q := r.URL.Query()
	ids, ok := int64s(multiVals(q, "filter[id]"))
	if !ok {
		badRequest(w, "filter[id]: This value should be of type int.")
		return
	}
	pipes, _ := int64s(multiVals(q, "filter[pipeline_id]"))
	resp, _ := int64s(multiVals(q, "filter[responsible_user_id]"))
	sts := statusFilters(q)
	updFrom, updTo := rangeFilter(q, "updated_at")
	crFrom, crTo := rangeFilter(q, "created_at")
	query := strings.ToLower(q.Get("query"))
	withContacts := hasWith(q, "contacts")

	s.mu.Lock()
	defer s.mu.Unlock()
	var found []*Lead
	for _, l := range acc.sortedLeads() {
		if len(ids) > 0 && !slices.Contains(ids, l.ID) {
			continue
		}
		if len(pipes) > 0 && !slices.Contains(pipes, l.PipelineID) {
			continue
		}
		if len(resp) > 0 && !slices.Contains(resp, l.ResponsibleUserID) {
			continue
		}
		if len(sts) > 0 && !slices.ContainsFunc(sts, func(f statusFilter) bool {
			return (f.pipelineID == 0 || f.pipelineID == l.PipelineID) && (f.statusID == 0 || f.statusID == l.StatusID)
		}) {
			continue
		}
		if !inRange(l.UpdatedAt.Unix(), updFrom, updTo) || !inRange(l.CreatedAt.Unix(), crFrom, crTo) {
			continue
		}
		if query != "" && !strings.Contains(strings.ToLower(l.Name), query) && strconv.FormatInt(l.ID, 10) != query {
			continue
		}
		found = append(found, l)
	}
	sortLeads(found, q)
	page, links, pg := paginate(s, "/api/v4/leads", q, found)
	if len(page) == 0 {
		noContent(w)
		return
	}
	out := make([]any, 0, len(page))
	for _, l := range page {
		out = append(out, s.renderLead(acc, l, withContacts))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_page":     pg,
		"_links":    links,
		"_embedded": map[string]any{"leads": out},
	})
}

func inRange(v, from, to int64) bool {
	return (from == 0 || v >= from) && (to == 0 || v <= to)
}

// sortLeads honours order[id|created_at|updated_at]=asc|desc; the default is
// ascending id, which keeps paging stable for tests.
func sortLeads(ls []*Lead, q url.Values) {
	for _, field := range []string{"updated_at", "created_at", "id"} {
		dir := q.Get("order[" + field + "]")
		if dir == "" {
			continue
		}
		key := func(l *Lead) int64 {
			switch field {
			case "updated_at":
				return l.UpdatedAt.Unix()
			case "created_at":
				return l.CreatedAt.Unix()
			}
			return l.ID
		}
		slices.SortStableFunc(ls, func(a, b *Lead) int {
			c := cmpInt(key(a), key(b))
			if strings.EqualFold(dir, "desc") {
				c = -c
			}
			return c
		})
		return
	}
}

// decodeObjects accepts the JSON array amoCRM expects; single means the
// endpoint takes one object instead.
func decodeObjects(body []byte, single bool) ([]map[string]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if single {
		var one map[string]json.RawMessage
		if err := json.Unmarshal(body, &one); err != nil || one == nil {
			return nil, fmt.Errorf("request body must be a JSON object")
		}
		return []map[string]json.RawMessage{one}, nil
	}
	var many []map[string]json.RawMessage
	if err := json.Unmarshal(body, &many); err != nil || len(body) == 0 || body[0] != '[' {
		return nil, fmt.Errorf("request body must be a JSON array")
	}
	if len(many) == 0 {
		return nil, fmt.Errorf("request body must not be empty")
	}
	return many, nil
}

func present(item map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	v, ok := item[key]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

func requestIDOf(item map[string]json.RawMessage, idx int) string {
	if v, ok := present(item, "request_id"); ok {
		var sv string
		if json.Unmarshal(v, &sv) == nil {
			return sv
		}
		return strings.Trim(string(v), `"`)
	}
	return strconv.Itoa(idx)
}

type cfvIn struct {
	FieldID   *int64  `json:"field_id"`
	FieldCode *string `json:"field_code"`
	Values    []struct {
		Value    any    `json:"value"`
		EnumID   int64  `json:"enum_id"`
		EnumCode string `json:"enum_code"`
	} `json:"values"`
}

// validateCFV checks custom_fields_values against the account's field
// definitions and returns the lead's values after applying them (only the
// listed fields change; empty values clear a field, as in amoCRM).
func validateCFV(acc *account, raw json.RawMessage, current []CustomFieldValue) ([]CustomFieldValue, []fieldErr) {
	var in []cfvIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, []fieldErr{{"InvalidType", "custom_fields_values", "This value should be of type array."}}
	}
	var errs []fieldErr
	next := cloneCFV(current)
	for j, c := range in {
		var f *CustomField
		if c.FieldID != nil {
			f = acc.leadField(*c.FieldID)
		} else if c.FieldCode != nil {
			f = acc.leadFieldByCode(*c.FieldCode)
		}
		if f == nil {
			errs = append(errs, fieldErr{"NotSupportedChoice", fmt.Sprintf("custom_fields_values.%d.field_id", j), "The value you selected is not a valid choice."})
			continue
		}
		vals := make([]FieldValue, 0, len(c.Values))
		for k, v := range c.Values {
			fv := FieldValue{Value: v.Value, EnumID: v.EnumID, EnumCode: v.EnumCode}
			if f.Type == "numeric" || f.Type == "price" || f.Type == "monetary" {
				if !isNumeric(v.Value) {
					errs = append(errs, fieldErr{"InvalidType", fmt.Sprintf("custom_fields_values.%d.values.%d.value", j, k), "This value should be of type numeric."})
					continue
				}
			}
			if err := resolveEnum(f, &fv); err != nil {
				errs = append(errs, fieldErr{"NotSupportedChoice", fmt.Sprintf("custom_fields_values.%d.values.%d.enum_id", j, k), "The value you selected is not a valid choice."})
				continue
			}
			vals = append(vals, fv)
		}
		idx := slices.IndexFunc(next, func(x CustomFieldValue) bool { return x.FieldID == f.ID })
		switch {
		case len(vals) == 0 && idx >= 0:
			next = slices.Delete(next, idx, idx+1)
		case len(vals) == 0:
		case idx >= 0:
			next[idx].Values = vals
		default:
			next = append(next, CustomFieldValue{FieldID: f.ID, FieldCode: f.Code, Values: vals})
		}
	}
	return next, errs
}

func isNumeric(v any) bool {
	switch v := v.(type) {
	case float64:
		return true
	case string:
		_, err := strconv.ParseFloat(v, 64)
		return err == nil
	}
	return false
}

func intField(item map[string]json.RawMessage, key string, errs *[]fieldErr) (int64, bool) {
	raw, ok := present(item, key)
	if !ok {
		return 0, false
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		*errs = append(*errs, fieldErr{"InvalidType", key, "This value should be of type int."})
		return 0, false
	}
	return n, true
}

// applyLeadPatch computes the next state of a lead from one PATCH item
// without touching stored state, so a batch can be rejected atomically.
func (s *Server) applyLeadPatch(acc *account, cur *Lead, item map[string]json.RawMessage) (Lead, []fieldErr) {
	var errs []fieldErr
	next := cloneLead(cur)
	if raw, ok := present(item, "name"); ok {
		if err := json.Unmarshal(raw, &next.Name); err != nil {
			errs = append(errs, fieldErr{"InvalidType", "name", "This value should be of type string."})
		}
	}
	if v, ok := intField(item, "price", &errs); ok {
		if v < 0 {
			errs = append(errs, fieldErr{"GreaterThanOrEqual", "price", "This value should be greater than or equal to 0."})
		}
		next.Price = v
	}
	if v, ok := intField(item, "responsible_user_id", &errs); ok {
		if !acc.user(v) {
			errs = append(errs, fieldErr{"NotSupportedChoice", "responsible_user_id", "The value you selected is not a valid choice."})
		}
		next.ResponsibleUserID = v
	}
	pipeID, hasPipe := intField(item, "pipeline_id", &errs)
	statusID, hasStatus := intField(item, "status_id", &errs)
	if hasPipe || hasStatus {
		if !hasPipe {
			pipeID = cur.PipelineID
		}
		p := acc.pipeline(pipeID)
		if p == nil {
			errs = append(errs, fieldErr{"NotSupportedChoice", "pipeline_id", "The value you selected is not a valid choice."})
		} else {
			if !hasStatus {
				statusID = cur.StatusID
				if pipeID != cur.PipelineID {
					statusID = p.firstWorkingStatus()
				}
			}
			if !p.hasStatus(statusID) {
				errs = append(errs, fieldErr{"NotSupportedChoice", "status_id", "The value you selected is not a valid choice."})
			}
			next.PipelineID, next.StatusID = pipeID, statusID
		}
	}
	if raw, ok := present(item, "custom_fields_values"); ok {
		cfv, ferrs := validateCFV(acc, raw, cur.CustomFieldsValues)
		errs = append(errs, ferrs...)
		next.CustomFieldsValues = cfv
	}
	now := s.now()
	next.UpdatedAt = now
	next.UpdatedBy = acc.apiUserID
	if v, ok := intField(item, "updated_by", &errs); ok {
		next.UpdatedBy = v
	}
	if isClosed(next.StatusID) && !isClosed(cur.StatusID) {
		next.ClosedAt = now
	} else if !isClosed(next.StatusID) {
		next.ClosedAt = time.Time{}
	}
	return next, errs
}

func (s *Server) handlePatchLeads(w http.ResponseWriter, r *http.Request, acc *account) {
	s.patchLeads(w, r, acc, 0)
}

func (s *Server) handlePatchLead(w http.ResponseWriter, r *http.Request, acc *account) {
	id, ok := pathID(r)
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "Not Found", nil)
		return
	}
	s.patchLeads(w, r, acc, id)
}

func (s *Server) patchLeads(w http.ResponseWriter, r *http.Request, acc *account, singleID int64) {
	body := bodyOf(r)
	items, err := decodeObjects(body, singleID != 0)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if singleID != 0 {
		items[0]["id"] = json.RawMessage(strconv.FormatInt(singleID, 10))
	}

	s.mu.Lock()
	type change struct {
		reqID  string
		before Lead
		after  Lead
		patch  map[string]any
	}
	// Validate against a working copy so repeated ids in one batch compose.
	work := map[int64]*Lead{}
	var changes []change
	var allErrs []itemErrors
	for i, item := range items {
		reqID := requestIDOf(item, i)
		var errs []fieldErr
		id, ok := intField(item, "id", &errs)
		var cur *Lead
		if ok {
			if cur = work[id]; cur == nil {
				cur = acc.liveLead(id)
			}
		}
		if cur == nil {
			if len(errs) == 0 {
				errs = append(errs, fieldErr{"NotFound", "id", "Entity not found"})
			}
			allErrs = append(allErrs, itemErrors{reqID, errs})
			continue
		}
		next, ferrs := s.applyLeadPatch(acc, cur, item)
		errs = append(errs, ferrs...)
		if len(errs) > 0 {
			allErrs = append(allErrs, itemErrors{reqID, errs})
			continue
		}
		var patch map[string]any
		_ = json.Unmarshal(mustJSON(item), &patch)
		changes = append(changes, change{reqID, cloneLead(cur), next, patch})
		n := next
		work[id] = &n
	}
	if len(allErrs) > 0 {
		s.mu.Unlock()
		validationError(w, allErrs)
		return
	}
	var outs []*outgoing
	resp := make([]any, 0, len(changes))
	for _, c := range changes {
		stored := cloneLead(&c.after)
		acc.leads[stored.ID] = &stored
		acc.leadUpdates = append(acc.leadUpdates, LeadUpdate{
			At: s.now(), LeadID: stored.ID, RequestID: c.reqID, Patch: c.patch, Before: c.before, After: cloneLead(&stored),
		})
		outs = append(outs, s.leadChangeEventsLocked(acc, &c.before, &stored)...)
		resp = append(resp, map[string]any{
			"id":         stored.ID,
			"updated_at": stored.UpdatedAt.Unix(),
			"request_id": c.reqID,
			"_links":     selfLink(s, fmt.Sprintf("/api/v4/leads/%d", stored.ID)),
		})
	}
	s.mu.Unlock()
	// Hooks are queued before the response so a client that waits for its own
	// echo sees it even in async mode.
	s.dispatch(outs)
	if singleID != 0 {
		m := resp[0].(map[string]any)
		delete(m, "request_id")
		writeJSON(w, http.StatusOK, m)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_links":    selfLink(s, "/api/v4/leads"),
		"_embedded": map[string]any{"leads": resp},
	})
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func bodyOf(r *http.Request) []byte {
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	return buf.Bytes()
}

// ---- contacts --------------------------------------------------------------

func (s *Server) handleContact(w http.ResponseWriter, r *http.Request, acc *account) {
	id, ok := pathID(r)
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "Not Found", nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := acc.liveContact(id)
	if c == nil {
		noContent(w)
		return
	}
	writeJSON(w, http.StatusOK, s.renderContact(acc, c, hasWith(r.URL.Query(), "leads")))
}

func (s *Server) handleContacts(w http.ResponseWriter, r *http.Request, acc *account) {
	q := r.URL.Query()
	ids, ok := int64s(multiVals(q, "filter[id]"))
	if !ok {
		badRequest(w, "filter[id]: This value should be of type int.")
		return
	}
	query := strings.ToLower(q.Get("query"))
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []*Contact
	for _, c := range acc.contacts {
		if c.Deleted || (len(ids) > 0 && !slices.Contains(ids, c.ID)) {
			continue
		}
		if query != "" && !contactMatches(c, query) {
			continue
		}
		found = append(found, c)
	}
	slices.SortFunc(found, func(a, b *Contact) int { return cmpInt(a.ID, b.ID) })
	page, links, pg := paginate(s, "/api/v4/contacts", q, found)
	if len(page) == 0 {
		noContent(w)
		return
	}
	out := make([]any, 0, len(page))
	for _, c := range page {
		out = append(out, s.renderContact(acc, c, hasWith(q, "leads")))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_page":     pg,
		"_links":    links,
		"_embedded": map[string]any{"contacts": out},
	})
}

func contactMatches(c *Contact, query string) bool {
	if strings.Contains(strings.ToLower(c.Name), query) {
		return true
	}
	for _, v := range append(slices.Clone(c.Phones), c.Emails...) {
		if strings.Contains(strings.ToLower(fmt.Sprint(v.Value)), query) {
			return true
		}
	}
	return false
}

// ---- custom fields ---------------------------------------------------------

func (s *Server) handleCustomFields(w http.ResponseWriter, r *http.Request, acc *account) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	fields := slices.Clone(acc.leadFields)
	slices.SortStableFunc(fields, func(a, b *CustomField) int { return a.Sort - b.Sort })
	page, links, pg := paginate(s, "/api/v4/leads/custom_fields", q, fields)
	if len(page) == 0 {
		noContent(w)
		return
	}
	_, limit := pageParams(q)
	out := make([]any, 0, len(page))
	for _, f := range page {
		out = append(out, s.renderField(acc, f))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_total_items": len(fields),
		"_page":        pg,
		"_page_count":  (len(fields) + limit - 1) / limit,
		"_links":       links,
		"_embedded":    map[string]any{"custom_fields": out},
	})
}

func (s *Server) handleCustomField(w http.ResponseWriter, r *http.Request, acc *account) {
	id, _ := pathID(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := acc.leadField(id)
	if f == nil {
		noContent(w)
		return
	}
	writeJSON(w, http.StatusOK, s.renderField(acc, f))
}

var fieldTypes = []string{
	"text", "numeric", "checkbox", "select", "multiselect", "date", "url", "textarea",
	"radiobutton", "streetaddress", "smart_address", "birthday", "legal_entity", "date_time",
	"price", "category", "items", "tracking_data", "linked_entity", "chained_list", "monetary",
	"file", "payer", "supplier", "multitext",
}

func (s *Server) handleCreateCustomFields(w http.ResponseWriter, r *http.Request, acc *account) {
	items, err := decodeObjects(bodyOf(r), false)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	type fieldIn struct {
		Name      string `json:"name"`
		Type      string `json:"type"`
		Code      string `json:"code"`
		Sort      int    `json:"sort"`
		IsAPIOnly bool   `json:"is_api_only"`
		Enums     []struct {
			Value string `json:"value"`
			Sort  int    `json:"sort"`
		} `json:"enums"`
	}
	s.mu.Lock()
	var allErrs []itemErrors
	var created []*CustomField
	var reqIDs []string
	codes := map[string]bool{}
	for _, f := range acc.leadFields {
		if f.Code != "" {
			codes[f.Code] = true
		}
	}
	for i, item := range items {
		reqID := requestIDOf(item, i)
		var in fieldIn
		var errs []fieldErr
		if err := json.Unmarshal(mustJSON(item), &in); err != nil {
			errs = append(errs, fieldErr{"InvalidType", "", err.Error()})
		}
		if strings.TrimSpace(in.Name) == "" {
			errs = append(errs, fieldErr{"NotBlank", "name", "This value should not be blank."})
		}
		if !slices.Contains(fieldTypes, in.Type) {
			errs = append(errs, fieldErr{"NotSupportedChoice", "type", "The value you selected is not a valid choice."})
		}
		if in.Code != "" && codes[in.Code] {
			errs = append(errs, fieldErr{"NotUnique", "code", "This value is already used."})
		}
		if len(errs) > 0 {
			allErrs = append(allErrs, itemErrors{reqID, errs})
			continue
		}
		codes[in.Code] = in.Code != ""
		f := &CustomField{Name: in.Name, Type: in.Type, Code: in.Code, Sort: in.Sort, IsAPIOnly: in.IsAPIOnly}
		for _, e := range in.Enums {
			f.Enums = append(f.Enums, Enum{Value: e.Value, Sort: e.Sort})
		}
		created = append(created, f)
		reqIDs = append(reqIDs, reqID)
	}
	if len(allErrs) > 0 {
		s.mu.Unlock()
		validationError(w, allErrs)
		return
	}
	out := make([]any, 0, len(created))
	for i, f := range created {
		f.ID = s.newID()
		if f.Sort == 0 {
			f.Sort = 500 + len(acc.leadFields)
		}
		for j := range f.Enums {
			f.Enums[j].ID = s.newID()
		}
		acc.leadFields = append(acc.leadFields, f)
		m := s.renderField(acc, f)
		m["request_id"] = reqIDs[i]
		out = append(out, m)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"_total_items": len(out),
		"_embedded":    map[string]any{"custom_fields": out},
	})
}

// ---- notes -----------------------------------------------------------------

var noteTypes = []string{
	"common", "call_in", "call_out", "service_message", "message_cashier", "geolocation",
	"sms_in", "sms_out", "extended_service_message", "attachment",
}

func (s *Server) handleLeadSub(w http.ResponseWriter, r *http.Request, acc *account) {
	id, ok := pathID(r)
	if !ok || r.PathValue("sub") != "notes" {
		writeProblem(w, http.StatusNotFound, "Not Found", "Not Found", nil)
		return
	}
	if r.Method == http.MethodPost {
		s.addNotes(w, r, acc, id)
		return
	}
	s.listNotes(w, r, acc, fmt.Sprintf("/api/v4/leads/%d/notes", id), []int64{id})
}

func (s *Server) handleNotesList(w http.ResponseWriter, r *http.Request, acc *account) {
	ids, _ := int64s(multiVals(r.URL.Query(), "filter[entity_id]"))
	s.listNotes(w, r, acc, "/api/v4/leads/notes", ids)
}

func (s *Server) handleAddNotes(w http.ResponseWriter, r *http.Request, acc *account) {
	s.addNotes(w, r, acc, 0)
}

func (s *Server) listNotes(w http.ResponseWriter, r *http.Request, acc *account, p string, leadIDs []int64) {
	q := r.URL.Query()
	types := multiVals(q, "filter[note_type]")
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []Note
	for _, n := range acc.notes {
		if len(leadIDs) > 0 && !slices.Contains(leadIDs, n.EntityID) {
			continue
		}
		if len(types) > 0 && !slices.Contains(types, n.NoteType) {
			continue
		}
		found = append(found, n)
	}
	page, links, pg := paginate(s, p, q, found)
	if len(page) == 0 {
		noContent(w)
		return
	}
	out := make([]any, 0, len(page))
	for _, n := range page {
		out = append(out, s.renderNote(acc, n))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_page":     pg,
		"_links":    links,
		"_embedded": map[string]any{"notes": out},
	})
}

func (s *Server) addNotes(w http.ResponseWriter, r *http.Request, acc *account, leadID int64) {
	items, err := decodeObjects(bodyOf(r), false)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	s.mu.Lock()
	var allErrs []itemErrors
	var notes []Note
	var reqIDs []string
	for i, item := range items {
		reqID := requestIDOf(item, i)
		var errs []fieldErr
		entityID := leadID
		if entityID == 0 {
			entityID, _ = intField(item, "entity_id", &errs)
		}
		if acc.liveLead(entityID) == nil && len(errs) == 0 {
			errs = append(errs, fieldErr{"NotFound", "entity_id", "Entity not found"})
		}
		var noteType string
		if raw, ok := present(item, "note_type"); !ok || json.Unmarshal(raw, &noteType) != nil || !slices.Contains(noteTypes, noteType) {
			errs = append(errs, fieldErr{"NotSupportedChoice", "note_type", "The value you selected is not a valid choice."})
		}
		var params map[string]any
		if raw, ok := present(item, "params"); ok {
			if json.Unmarshal(raw, &params) != nil {
				errs = append(errs, fieldErr{"InvalidType", "params", "This value should be of type object."})
			}
		}
		if noteType == "common" {
			if t, _ := params["text"].(string); strings.TrimSpace(t) == "" {
				errs = append(errs, fieldErr{"NotBlank", "params.text", "This value should not be blank."})
			}
		}
		if len(errs) > 0 {
			allErrs = append(allErrs, itemErrors{reqID, errs})
			continue
		}
		by := acc.apiUserID
		if v, ok := intField(item, "created_by", &errs); ok && v != 0 {
			by = v
		}
		notes = append(notes, Note{EntityID: entityID, NoteType: noteType, Params: params, CreatedBy: by,
			ResponsibleUserID: acc.leads[entityID].ResponsibleUserID, CreatedAt: s.now()})
		reqIDs = append(reqIDs, reqID)
	}
	if len(allErrs) > 0 {
		s.mu.Unlock()
		validationError(w, allErrs)
		return
	}
	out := make([]any, 0, len(notes))
	for i := range notes {
		notes[i].ID = s.newID()
		acc.notes = append(acc.notes, notes[i])
		out = append(out, map[string]any{
			"id":         notes[i].ID,
			"entity_id":  notes[i].EntityID,
			"request_id": reqIDs[i],
			"_links":     selfLink(s, fmt.Sprintf("/api/v4/leads/%d/notes/%d", notes[i].EntityID, notes[i].ID)),
		})
	}
	s.mu.Unlock()
	p := "/api/v4/leads/notes"
	if leadID != 0 {
		p = fmt.Sprintf("/api/v4/leads/%d/notes", leadID)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_links":    selfLink(s, p),
		"_embedded": map[string]any{"notes": out},
	})
}
