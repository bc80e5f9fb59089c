package orderview

import (
	"fmt"
	"strings"
)

// The renderer's texts live here rather than in package i18n because they are
// fragments of a layout (labels, yes/no) that only make sense together with
// the formatting code below.
var catalog = map[string]map[string]string{
	"ru": {
		"order":          "Заказ №%d",
		"budget":         "Бюджет",
		"client":         "Клиент",
		"executor_found": "Исполнитель найден",
		"taken_at":       "Взят в работу",
		"yes":            "да",
		"no":             "нет",
	},
	"en": {
		"order":          "Order #%d",
		"budget":         "Budget",
		"client":         "Client",
		"executor_found": "Executor found",
		"taken_at":       "Taken",
		"yes":            "yes",
		"no":             "no",
	},
}

// normLang follows i18n.Lang: English only when asked for, Russian otherwise.
func normLang(lang string) string {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(lang)), "en") {
		return "en"
	}
	return "ru"
}

func tr(lang, key string, args ...any) string {
	msg, ok := catalog[lang][key]
	if !ok {
		msg = catalog["ru"][key]
	}
	if len(args) == 0 {
		return msg
	}
	return fmt.Sprintf(msg, args...)
}
