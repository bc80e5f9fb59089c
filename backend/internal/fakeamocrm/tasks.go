package fakeamocrm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Task is an amoCRM task, as POST /api/v4/tasks stores it.
type Task struct {
	ID                int64
	EntityID          int64
	EntityType        string // "leads", "contacts", "companies", "customers" or "" (a free task)
	TaskTypeID        int64  // 1 follow-up, 2 meeting: amoCRM's two built-in types
	Text              string
	CompleteTill      time.Time
	Duration          int64
	ResponsibleUserID int64
	IsCompleted       bool
	CreatedBy         int64
	CreatedAt         time.Time
}

var taskEntityTypes = []string{"leads", "contacts", "companies", "customers"}

// Tasks returns the tasks of an account bound to a lead (all tasks if leadID is 0).
func (s *Server) Tasks(accountID, leadID int64) []Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	acc := s.accounts[accountID]
	if acc == nil {
		return nil
	}
	var out []Task
	for _, t := range acc.tasks {
		if leadID == 0 || (t.EntityType == "leads" && t.EntityID == leadID) {
			out = append(out, t)
		}
	}
	return out
}

func (s *Server) renderTask(acc *account, t Task) map[string]any {
	return map[string]any{
		"id":                  t.ID,
		"created_by":          t.CreatedBy,
		"updated_by":          t.CreatedBy,
		"created_at":          t.CreatedAt.Unix(),
		"updated_at":          t.CreatedAt.Unix(),
		"responsible_user_id": t.ResponsibleUserID,
		"group_id":            0,
		"entity_id":           nullableID(t.EntityID),
		"entity_type":         nullableString(t.EntityType),
		"is_completed":        t.IsCompleted,
		"task_type_id":        t.TaskTypeID,
		"text":                t.Text,
		"duration":            t.Duration,
		"complete_till":       t.CompleteTill.Unix(),
		"result":              []any{},
		"account_id":          acc.id,
		"_links":              selfLink(s, fmt.Sprintf("/api/v4/tasks/%d", t.ID)),
	}
}

func nullableID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func nullableString(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func (s *Server) handleTask(w http.ResponseWriter, r *http.Request, acc *account) {
	id, ok := pathID(r)
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not Found", "Not Found", nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range acc.tasks {
		if t.ID == id {
			writeJSON(w, http.StatusOK, s.renderTask(acc, t))
			return
		}
	}
	noContent(w)
}

// handleTasks lists tasks with amoCRM's filters: entity_type with entity_id[]
// (entity ids mean nothing without their type), is_completed,
// responsible_user_id[], task_type[] and id[].
func (s *Server) handleTasks(w http.ResponseWriter, r *http.Request, acc *account) {
	q := r.URL.Query()
	entityType := q.Get("filter[entity_type]")
	if entityType != "" && !slices.Contains(taskEntityTypes, entityType) {
		badRequest(w, "filter[entity_type]: The value you selected is not a valid choice.")
		return
	}
	entityIDs, ok1 := int64s(multiVals(q, "filter[entity_id]"))
	users, ok2 := int64s(multiVals(q, "filter[responsible_user_id]"))
	types, ok3 := int64s(multiVals(q, "filter[task_type]"))
	ids, ok4 := int64s(multiVals(q, "filter[id]"))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		badRequest(w, "filter: This value should be of type int.")
		return
	}
	completed := q.Get("filter[is_completed]")
	if completed != "" && completed != "0" && completed != "1" {
		badRequest(w, "filter[is_completed]: This value should be 0 or 1.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var found []Task
	for _, t := range acc.tasks {
		switch {
		case entityType != "" && t.EntityType != entityType,
			entityType != "" && len(entityIDs) > 0 && !slices.Contains(entityIDs, t.EntityID),
			len(users) > 0 && !slices.Contains(users, t.ResponsibleUserID),
			len(types) > 0 && !slices.Contains(types, t.TaskTypeID),
			len(ids) > 0 && !slices.Contains(ids, t.ID),
			completed != "" && t.IsCompleted != (completed == "1"):
			continue
		}
		found = append(found, t)
	}
	page, links, pg := paginate(s, "/api/v4/tasks", q, found)
	if len(page) == 0 {
		noContent(w)
		return
	}
	out := make([]any, 0, len(page))
	for _, t := range page {
		out = append(out, s.renderTask(acc, t))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_page":     pg,
		"_links":    links,
		"_embedded": map[string]any{"tasks": out},
	})
}

// handleAddTasks creates tasks, all or none: text and complete_till are
// required, the type defaults to 1 (follow-up) and the responsible user to
// the user the integration acts as.
func (s *Server) handleAddTasks(w http.ResponseWriter, r *http.Request, acc *account) {
	items, err := decodeObjects(bodyOf(r), false)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	s.mu.Lock()
	var allErrs []itemErrors
	var tasks []Task
	var reqIDs []string
	for i, item := range items {
		reqID := requestIDOf(item, i)
		var errs []fieldErr
		t := Task{TaskTypeID: 1, ResponsibleUserID: acc.apiUserID, CreatedBy: acc.apiUserID, CreatedAt: s.now()}
		if raw, ok := present(item, "text"); !ok || json.Unmarshal(raw, &t.Text) != nil || strings.TrimSpace(t.Text) == "" {
			errs = append(errs, fieldErr{"NotBlank", "text", "This value should not be blank."})
		}
		if till, ok := intField(item, "complete_till", &errs); ok {
			t.CompleteTill = time.Unix(till, 0)
		} else if _, given := present(item, "complete_till"); !given {
			errs = append(errs, fieldErr{"NotBlank", "complete_till", "This value should not be blank."})
		}
		if v, ok := intField(item, "task_type_id", &errs); ok {
			if v != 1 && v != 2 {
				errs = append(errs, fieldErr{"NotFound", "task_type_id", "Task type not found"})
			}
			t.TaskTypeID = v
		}
		if v, ok := intField(item, "duration", &errs); ok {
			if v < 0 {
				errs = append(errs, fieldErr{"GreaterThanOrEqual", "duration", "This value should be greater than or equal to 0."})
			}
			t.Duration = v
		}
		if v, ok := intField(item, "responsible_user_id", &errs); ok {
			if !acc.user(v) {
				errs = append(errs, fieldErr{"NotFound", "responsible_user_id", "User not found"})
			}
			t.ResponsibleUserID = v
		}
		if raw, ok := present(item, "entity_type"); ok {
			if json.Unmarshal(raw, &t.EntityType) != nil || !slices.Contains(taskEntityTypes, t.EntityType) {
				errs = append(errs, fieldErr{"NotSupportedChoice", "entity_type", "The value you selected is not a valid choice."})
			}
		}
		if v, ok := intField(item, "entity_id", &errs); ok {
			t.EntityID = v
		}
		switch {
		case (t.EntityID == 0) != (t.EntityType == ""):
			errs = append(errs, fieldErr{"NotBlank", "entity_id", "entity_id and entity_type go together."})
		case t.EntityType == "leads" && acc.liveLead(t.EntityID) == nil:
			errs = append(errs, fieldErr{"NotFound", "entity_id", "Entity not found"})
		}
		if len(errs) > 0 {
			allErrs = append(allErrs, itemErrors{reqID, errs})
			continue
		}
		tasks = append(tasks, t)
		reqIDs = append(reqIDs, reqID)
	}
	if len(allErrs) > 0 {
		s.mu.Unlock()
		validationError(w, allErrs)
		return
	}
	out := make([]any, 0, len(tasks))
	for i := range tasks {
		tasks[i].ID = s.newID()
		acc.tasks = append(acc.tasks, tasks[i])
		out = append(out, map[string]any{
			"id":         tasks[i].ID,
			"request_id": reqIDs[i],
			"_links":     selfLink(s, fmt.Sprintf("/api/v4/tasks/%d", tasks[i].ID)),
		})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"_links":    selfLink(s, "/api/v4/tasks"),
		"_embedded": map[string]any{"tasks": out},
	})
}
