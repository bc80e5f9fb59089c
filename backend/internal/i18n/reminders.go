package i18n

// Texts of the reminders before the job time (issue #13), kept apart so the
// feature's texts read together.
var reminderTexts = map[string]map[string]string{
	"ru": {
		"btn.confirm":          "👍 Подтверждаю",
		"remind.text":          "⏰ Напоминание: заказ №%d, время работ — %s. Подтвердите, что будете, или откажитесь.",
		"remind.confirmed":     "👍 Вы подтвердили заказ.",
		"remind.task":          "Исполнитель %s не подтвердил заказ, время работ — %s. Свяжитесь с ним или найдите замену.",
		"remind.note":          "Исполнитель %s не подтвердил заказ за 30 минут до времени работ (%s); менеджеру поставлена задача.",
		"cb.confirmed":         "Спасибо, подтверждение сохранено.",
		"cb.confirmed_already": "Заказ уже подтверждён.",
		"status.confirmed":     "подтвердил заказ",
	},
	"en": {
		"btn.confirm":          "👍 Confirm",
		"remind.text":          "⏰ Reminder: order #%d, job time %s. Confirm you will be there, or release it.",
		"remind.confirmed":     "👍 You confirmed the order.",
		"remind.task":          "Executor %s has not confirmed the order, job time %s. Contact them or find a replacement.",
		"remind.note":          "Executor %s did not confirm the order 30 minutes before the job time (%s); the manager got a task.",
		"cb.confirmed":         "Thank you, your confirmation is saved.",
		"cb.confirmed_already": "The order is already confirmed.",
		"status.confirmed":     "confirmed the order",
	},
}

func init() {
	for lang, texts := range reminderTexts {
		for k, v := range texts {
			catalog[lang][k] = v
		}
	}
}
