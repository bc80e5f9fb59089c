// Package i18n holds every user-facing text in Russian (the default) and English.
package i18n

import (
	"fmt"
	"strings"
)

// Lang normalises a language hint (amoCRM account language, Telegram
// language_code, Accept-Language) to "ru" or "en".
func Lang(hint string) string {
	h := strings.ToLower(strings.TrimSpace(hint))
	if strings.HasPrefix(h, "en") {
		return "en"
	}
	return "ru"
}

// T formats the text key in lang, falling back to Russian.
func T(lang, key string, args ...any) string {
	msg, ok := catalog[Lang(lang)][key]
	if !ok {
		msg, ok = catalog["ru"][key]
	}
	if !ok {
		return key
	}
	if len(args) == 0 {
		return msg
	}
	return fmt.Sprintf(msg, args...)
}

// Keys lists the keys of a language, for parity tests.
func Keys(lang string) []string {
	var out []string
	for k := range catalog[lang] {
		out = append(out, k)
	}
	return out
}

var catalog = map[string]map[string]string{
	"ru": {
		"btn.phone":         "📞 Получить номер телефона клиента",
		"btn.take":          "✅ Забрать заказ",
		"cb.yours":          "✅ Заказ ваш! Подробности и контакт клиента — в личных сообщениях.",
		"digest.title":      "📊 Заказы за неделю %s–%s",
		"digest.orders":     "Опубликовано: %d · взято: %d · выполнено: %d · отказы: %d · снято: %d",
		"digest.take":       "От публикации до взятия: медиана %s, 90%%: %s; взято за 15 мин: %d%%",
		"digest.top":        "Больше всех взял(а): %s (%d)",
		"cb.yours_start":    "✅ Заказ ваш! Откройте бота, чтобы получить контакт клиента.",
		"cb.already_yours":  "Этот заказ уже ваш.",
		"cb.taken":          "Этот заказ уже забрали.",
		"cb.closed":         "Заказ больше не актуален.",
		"cb.contact_sent":   "Контакт клиента отправлен вам в личные сообщения.",
		"cb.open_bot":       "Откройте бота — контакт клиента придёт туда.",
		"cb.error":          "Не получилось, попробуйте ещё раз через минуту.",
		"cb.stale":          "Эта кнопка не действует.",
		"contact.taken":     "Заказ №%d уже забрал другой исполнитель — контакт клиента больше недоступен.",
		"contact.none":      "В сделке нет контакта клиента. Уточните детали у менеджера.",
		"contact.closed":    "Заказ №%d больше не актуален — контакт клиента недоступен.",
		"contact.header":    "📇 Контакт клиента по заказу",
		"order.yours":       "✅ Вы забрали заказ. Свяжитесь с клиентом:",
		"order.withdrawn":   "⛔ Заказ снят с поиска.",
		"note.taken":        "Исполнитель найден в Telegram (amoDispatch): %s, Telegram ID %d, %s.",
		"btn.on_way":        "🚗 В пути",
		"btn.started":       "▶️ Приступил",
		"btn.done":          "✅ Выполнено",
		"btn.released":      "↩️ Отказаться",
		"btn.release_yes":   "↩️ Да, отказаться",
		"btn.release_no":    "Нет, оставить за мной",
		"status.taken":      "заказ забран",
		"status.on_way":     "в пути",
		"status.started":    "приступил",
		"status.done":       "выполнено",
		"card.status":       "Статус: %s, %s",
		"card.release_ask":  "Отказаться от заказа? Он вернётся в поиск и снова будет опубликован в группе.",
		"card.released":     "↩️ Вы отказались от заказа.",
		"card.unassigned":   "↩️ Менеджер снял вас с заказа.",
		"card.ended":        "⛔ Менеджер закрыл сделку или убрал её из поиска исполнителей: заказ завершён.",
		"notice.unassigned": "↩️ Менеджер снял вас с заказа №%d.",
		"notice.ended":      "⛔ Заказ №%d завершён: менеджер закрыл сделку или убрал её из поиска исполнителей.",
		"cb.status_saved":   "Статус сохранён.",
		"cb.status_already": "Этот статус уже отмечен.",
		"cb.not_yours":      "Это не ваш заказ: отмечать его может только исполнитель.",
		"cb.release_ask":    "Подтвердите отказ в сообщении с заказом.",
		"cb.released":       "Вы отказались от заказа.",
		"cb.release_kept":   "Заказ остаётся за вами.",
		"cb.executor_only":  "Контакт клиента получит только исполнитель, когда заберёт заказ.",
		"note.status":       "%s: %s, %s",
		"note.released":     "%s отказался от заказа, %s. Сделка снова в поиске исполнителя.",
		"note.unassigned":   "Исполнитель %s снят с заказа, %s. Сделка снова в поиске исполнителя.",
		"note.contact":      "%s запросил контакт клиента, %s",
		"order.released":    "↩️ Исполнитель отказался от заказа.",
		"order.unassigned":  "↩️ Менеджер снял исполнителя с заказа.",
		"my.none":           "У вас нет открытых заказов.",
		"link.ok":           "✅ Чат «%s» подключён к аккаунту amoCRM «%s». Сюда будут приходить заказы.",
		"link.already":      "Этот чат уже подключён к аккаунту amoCRM «%s».",
		"link.bad_code":     "Ссылка подключения устарела или код неверен: каждая ссылка подключает только один чат. Попросите администратора amoCRM открыть настройки amoDispatch и добавить бота по новой ссылке оттуда.",
		"link.taken":        "Этот чат уже подключён к другому аккаунту amoCRM. Сначала удалите бота из чата.",
		"link.usage":        "Чтобы подключить этот чат, добавьте бота по ссылке из настроек amoDispatch в amoCRM или отправьте /link КОД.",
		"link.not_group":    "Подключить можно только групповой чат. Добавьте бота в группу исполнителей.",
		"start.expired":     "Эта ссылка устарела. Нажмите «Получить номер телефона клиента» под заказом ещё раз.",
		"start.closed":      "Этот заказ больше не актуален — контакт клиента недоступен.",
		"start.private":     "Здравствуйте, %s! Вы зарегистрированы как исполнитель. Сюда бот будет присылать контакты клиентов и заказы, которые вы возьмёте.",
		"install.title":     "amoDispatch подключён",
		"install.ok":        "Интеграция установлена в аккаунт «%s».",
		"install.next":      "Теперь добавьте бота в групповой чат исполнителей — он подключится к этому аккаунту автоматически:",
		"install.button":    "Добавить бота в группу",
		"install.code":      "Или отправьте в группе команду:",
		"install.nobot":     "Telegram-бот ещё не настроен на сервере: добавьте TELEGRAM_BOT_TOKEN и вернитесь к этой странице.",
		"install.setup":     "Настройка аккаунта не завершилась (%s) и будет повторена автоматически.",
		"install.failed":    "Не удалось установить интеграцию",
		"install.denied":    "Установка отменена: доступ к аккаунту не предоставлен.",
		"install.bad":       "Некорректный запрос установки: %s",
		"install.again":     "Попробуйте установить интеграцию ещё раз из настроек amoCRM.",
		"install.used":      "Этот код авторизации уже использован. Если интеграция установлена, ссылка для добавления бота в Telegram есть в настройках виджета amoDispatch в amoCRM.",
		"install.state":     "Ссылка установки устарела или не выдана этим сервером. Начните установку заново.",
		"install.busy":      "Слишком много попыток установки. Подождите минуту и обновите страницу.",
		"error.internal":    "Внутренняя ошибка сервера. Попробуйте позже.",
		"error.notconfig":   "Интеграция с amoCRM не настроена на сервере.",
	},
	"en": {
		"btn.phone":         "📞 Get client phone",
		"btn.take":          "✅ Take order",
		"cb.yours":          "✅ The order is yours! Details and the client's contact are in your private messages.",
		"digest.title":      "📊 Orders of the week %s–%s",
		"digest.orders":     "Posted: %d · taken: %d · done: %d · released: %d · withdrawn: %d",
		"digest.take":       "Post to take: median %s, 90%%: %s; taken within 15 min: %d%%",
		"digest.top":        "Took the most: %s (%d)",
		"cb.yours_start":    "✅ The order is yours! Open the bot to get the client's contact.",
		"cb.already_yours":  "This order is already yours.",
		"cb.taken":          "This order has already been taken.",
		"cb.closed":         "This order is no longer available.",
		"cb.contact_sent":   "The client's contact was sent to you in a private message.",
		"cb.open_bot":       "Open the bot: the client's contact will arrive there.",
		"cb.error":          "Something went wrong, please try again in a minute.",
		"cb.stale":          "This button does not work.",
		"contact.taken":     "Order #%d was taken by another executor: the client's contact is no longer available.",
		"contact.none":      "The deal has no client contact. Please ask the manager.",
		"contact.closed":    "Order #%d is no longer available: the client's contact is not sent.",
		"contact.header":    "📇 Client contact for the order",
		"order.yours":       "✅ You took the order. Contact the client:",
		"order.withdrawn":   "⛔ The order was withdrawn.",
		"note.taken":        "Executor found in Telegram (amoDispatch): %s, Telegram ID %d, %s.",
		"btn.on_way":        "🚗 On my way",
		"btn.started":       "▶️ Started",
		"btn.done":          "✅ Done",
		"btn.released":      "↩️ Release",
		"btn.release_yes":   "↩️ Yes, release it",
		"btn.release_no":    "No, keep it",
		"status.taken":      "order taken",
		"status.on_way":     "on the way",
		"status.started":    "started",
		"status.done":       "done",
		"card.status":       "Status: %s, %s",
		"card.release_ask":  "Release the order? It goes back to the search and is posted to the group again.",
		"card.released":     "↩️ You released the order.",
		"card.unassigned":   "↩️ The manager unassigned you from the order.",
		"card.ended":        "⛔ The manager closed the deal or took it out of the executor search: the order is over.",
		"notice.unassigned": "↩️ The manager unassigned you from order #%d.",
		"notice.ended":      "⛔ Order #%d is over: the manager closed the deal or took it out of the executor search.",
		"cb.status_saved":   "Status saved.",
		"cb.status_already": "This status is already set.",
		"cb.not_yours":      "This is not your order: only its executor can set its status.",
		"cb.release_ask":    "Confirm the release in the order's message.",
		"cb.released":       "You released the order.",
		"cb.release_kept":   "The order stays yours.",
		"cb.executor_only":  "Only the executor gets the client's contact, once they take the order.",
		"note.status":       "%s: %s, %s",
		"note.released":     "%s released the order, %s. The deal is searching for an executor again.",
		"note.unassigned":   "Executor %s was unassigned, %s. The deal is searching for an executor again.",
		"note.contact":      "%s asked for the client's contact, %s",
		"order.released":    "↩️ The executor released the order.",
		"order.unassigned":  "↩️ The manager unassigned the executor.",
		"my.none":           "You have no open orders.",
		"link.ok":           "✅ Chat “%s” is linked to the amoCRM account “%s”. Orders will be posted here.",
		"link.already":      "This chat is already linked to the amoCRM account “%s”.",
		"link.bad_code":     "This link has expired or the code is wrong: a link works for one chat only. Ask the amoCRM admin to open the amoDispatch settings and add the bot with the new link shown there.",
		"link.taken":        "This chat is already linked to another amoCRM account. Remove the bot from the chat first.",
		"link.usage":        "To link this chat, add the bot with the link from the amoDispatch settings in amoCRM or send /link CODE.",
		"link.not_group":    "Only a group chat can be linked. Add the bot to your executors' group.",
		"start.expired":     "This link has expired. Press “Get client phone” under the order again.",
		"start.closed":      "This order is no longer available: the client's contact is not sent.",
		"start.private":     "Hello, %s! You are registered as an executor. The bot will send client contacts and the orders you take here.",
		"install.title":     "amoDispatch is connected",
		"install.ok":        "The integration is installed in the account “%s”.",
		"install.next":      "Now add the bot to your executors' group chat — it links to this account automatically:",
		"install.button":    "Add the bot to a group",
		"install.code":      "Or send this command in the group:",
		"install.nobot":     "The Telegram bot is not configured on the server yet: set TELEGRAM_BOT_TOKEN and come back to this page.",
		"install.setup":     "Account setup did not finish (%s) and will be retried automatically.",
		"install.failed":    "The integration could not be installed",
		"install.denied":    "Installation cancelled: access to the account was not granted.",
		"install.bad":       "Invalid installation request: %s",
		"install.again":     "Please install the integration again from the amoCRM settings.",
		"install.used":      "This authorization code was already used. If the integration is installed, the link that adds the bot to Telegram is in the amoDispatch widget's settings in amoCRM.",
		"install.state":     "The installation link has expired or was not issued by this server. Please start the installation again.",
		"install.busy":      "Too many installation attempts. Please wait a minute and reload the page.",
		"error.internal":    "Internal server error. Please try again later.",
		"error.notconfig":   "The amoCRM integration is not configured on the server.",
	},
}
