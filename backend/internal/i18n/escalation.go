package i18n

// Texts of the escalation ladder (issue #13), kept apart so the catalog's
// other parts change without touching them.
var escalation = map[string]map[string]string{
	"ru": {
		"order.bumped":      "⬇️ Заказ поднят — он ниже в чате.",
		"order.bumped_open": "Открыть",
		"task.untaken":      "Никто не взял заказ за %d мин",
		"task.expired":      "Заказ снят с поиска: никто не взял его за %d ч",
		"note.untaken":      "Никто не взял заказ в Telegram за %d мин (amoDispatch). Задача ответственному — до %s.",
		"note.expired":      "Заказ снят с поиска в Telegram: никто не взял его за %d ч (amoDispatch).",
	},
	"en": {
		"order.bumped":      "⬇️ The order was posted again below.",
		"order.bumped_open": "Open",
		"task.untaken":      "Nobody took the order in %d min",
		"task.expired":      "The order was withdrawn: nobody took it in %d h",
		"note.untaken":      "Nobody took the order in Telegram in %d min (amoDispatch). A task for the responsible user, due %s.",
		"note.expired":      "The order was withdrawn in Telegram: nobody took it in %d h (amoDispatch).",
	},
}

func init() {
	for lang, texts := range escalation {
		for k, v := range texts {
			catalog[lang][k] = v
		}
	}
}
