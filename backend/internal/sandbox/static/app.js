// The sandbox page: polls /sandbox/state every second and redraws what
// changed; moves deals and presses buttons through the sandbox server, which
// plays amoCRM's and Telegram's users.
(function () {
  'use strict';

  var TEXT = {
    ru: {
      title: 'песочница', install_page: 'страница установки', stats_page: 'статистика', board: 'Сделки · воронка «Заказы»',
      board_hint: 'Перетащите сделку в «Поиск исполнителя» (или нажмите ▶): amoCRM отправит вебхук, и бот опубликует заказ в группе.',
      pick_deal: 'Выберите сделку на доске.', widget_panel: 'Виджет amoDispatch в карточке сделки',
      acting_as: 'Исполнитель:', group: 'Группа в Telegram', private_chat: 'Личный чат с ботом',
      no_messages: 'Сообщений пока нет.', not_opened: 'ещё не открывал(а) бота', stage: 'Этап', budget: 'Бюджет',
      responsible: 'Ответственный', contact: 'Контакт', notes: 'Примечания', no_notes: 'Примечаний нет.',
      executor: 'Исполнитель', edited: 'изменено', added: 'добавил(а) в группу', prev: 'на предыдущий этап',
      next: 'на следующий этап', opened_bot: 'Открыт чат с ботом по ссылке из ответа.', press_as: 'Нажимает: ',
      rub: '₽', error: 'Ошибка: '
    },
    en: {
      title: 'sandbox', install_page: 'install page', stats_page: 'statistics', board: 'Deals · pipeline "Заказы"',
      board_hint: 'Drag a deal to "Поиск исполнителя" (searching), or press ▶: amoCRM sends the webhook and the bot posts the order in the group.',
      pick_deal: 'Pick a deal on the board.', widget_panel: 'The amoDispatch widget in the deal card',
      acting_as: 'Executor:', group: 'Telegram group', private_chat: 'Private chat with the bot',
      no_messages: 'No messages yet.', not_opened: 'has not opened the bot yet', stage: 'Stage', budget: 'Budget',
      responsible: 'Responsible', contact: 'Contact', notes: 'Notes', no_notes: 'No notes.',
      executor: 'Executor', edited: 'edited', added: 'added to the group', prev: 'to the previous stage',
      next: 'to the next stage', opened_bot: 'Opened the bot through the link in the answer.', press_as: 'Pressing as ',
      rub: 'RUB', error: 'Error: '
    }
  };
  var lang = localStorage.getItem('sandbox.lang') === 'en' ? 'en' : 'ru';
  var selected = Number(new URLSearchParams(location.search).get('lead')) || 0;
  var executor = 0;  // the executor who presses buttons and whose private chat shows
  var state = null;
  var drawn = {};    // section → JSON last drawn, so that unchanged parts keep their DOM
  var cardKey = '';

  function t(key) { return TEXT[lang][key] || key; }
  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function money(n) { return Number(n).toLocaleString('ru-RU') + ' ' + t('rub'); }

  function api(method, path, body) {
    return fetch(path, {
      method: method, headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error || r.statusText); }
        return j;
      });
    });
  }

  var toastTimer = null;
  function toast(text, isError) {
    var el = $('toast');
    el.textContent = text;
    el.className = 'toast' + (isError ? ' toast--error' : '');
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, 5000);
  }

  function applyLang() {
    document.documentElement.lang = lang;
    $('lang').textContent = lang === 'ru' ? 'EN' : 'RU';
    $('stats-link').href = '/settings?tab=stats&lang=' + lang;
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (el) {
      el.textContent = t(el.getAttribute('data-i18n'));
    });
    drawn = {};
    cardKey = '';
    if (state) { draw(); }
  }

  function drawBoard() {
    var html = '';
    state.stages.forEach(function (st, i) {
      html += '<div class="column" data-stage="' + st.id + '"><div class="column__title">' + esc(st.name) + '</div>';
      state.deals.filter(function (d) { return d.stage_id === st.id; }).forEach(function (d) {
        html += '<div class="deal-card' + (d.id === selected ? ' deal-card--selected' : '') + '" draggable="true" data-id="' + d.id + '">' +
          '<div class="deal-card__name">' + esc(d.name) + '</div>' +
          '<div class="deal-card__price">' + money(d.price) + '</div>' +
          '<div class="deal-card__contact">' + esc(d.contact) + '</div>' +
          (d.executor ? '<div class="deal-card__executor">👤 ' + esc(d.executor) + '</div>' : '') +
          '<div class="deal-card__moves">' +
          (i > 0 ? '<button type="button" class="move" data-stage="' + state.stages[i - 1].id + '" title="' + esc(t('prev')) + '">◀</button>' : '') +
          (i < state.stages.length - 1 ? '<button type="button" class="move move--next" data-stage="' + state.stages[i + 1].id + '" title="' + esc(t('next')) + '">▶</button>' : '') +
          '</div></div>';
      });
      html += '</div>';
    });
    $('board').innerHTML = html;
  }

  function drawMessages(chat, emptyText) {
    if (!chat.messages.length) { return '<p class="hint">' + esc(emptyText) + '</p>'; }
    return chat.messages.map(function (m) {
      if (m.joined) {
        return '<div class="msg msg--service">' + esc(m.from) + ' ' + esc(t('added')) + ' ' + esc(m.joined) + '</div>';
      }
      var buttons = m.buttons.map(function (row) {
        return '<div class="kb-row">' + row.map(function (b) {
          return b.url ? '<a class="kb" href="' + esc(b.url) + '" target="_blank" rel="noopener">' + esc(b.text) + '</a>'
            : '<button type="button" class="kb" data-chat="' + chat.id + '" data-message="' + m.id + '" data-data="' + esc(b.data) + '">' + esc(b.text) + '</button>';
        }).join('') + '</div>';
      }).join('');
      return '<div class="msg' + (m.bot ? ' msg--bot' : '') + '" data-id="' + m.id + '">' +
        '<div class="msg__from">' + esc(m.from) + '</div>' +
        '<div class="msg__text">' + m.html + '</div>' +
        '<div class="msg__meta">' + (m.edited ? esc(t('edited')) + ' · ' : '') + esc(m.time) + '</div>' +
        (buttons ? '<div class="kb-rows">' + buttons + '</div>' : '') + '</div>';
    }).join('');
  }

  function drawChat(el, title, subtitle, chat, emptyText) {
    el.innerHTML = '<div class="tg__title">' + esc(title) + (subtitle ? '<span class="tg__subtitle">' + esc(subtitle) + '</span>' : '') + '</div>' +
      '<div class="tg__messages">' + drawMessages(chat, emptyText) + '</div>';
    var box = el.querySelector('.tg__messages');
    box.scrollTop = box.scrollHeight;
  }

  function currentExecutor() {
    return state.executors.filter(function (x) { return x.id === executor; })[0] || state.executors[0];
  }

  function drawTabs() {
    $('exec-tabs').innerHTML = state.executors.map(function (x) {
      return '<button type="button" class="exec-tab' + (x.id === executor ? ' exec-tab--on' : '') + '" data-id="' + x.id + '">' +
        esc(x.name) + '</button>';
    }).join('');
  }

  function drawDeal() {
    var d = state.deal;
    if (!d) { $('deal').innerHTML = '<p class="hint">' + esc(t('pick_deal')) + '</p>'; return; }
    var rows = [[t('stage'), d.stage], [t('budget'), money(d.price)], [t('responsible'), d.responsible]];
    d.fields.forEach(function (f) { rows.push([f.name, f.value]); });
    rows.push([t('contact'), d.contact.name + (d.contact.phones ? ', ' + d.contact.phones.join(', ') : '')]);
    $('deal').innerHTML = '<h3 class="deal__name">' + esc(d.name) + ' <span class="deal__id">#' + d.id + '</span></h3>' +
      '<table class="deal__fields" id="deal-fields">' + rows.map(function (r) {
        return '<tr><th>' + esc(r[0]) + '</th><td>' + esc(r[1]) + '</td></tr>';
      }).join('') + '</table>' +
      '<h4>' + esc(t('notes')) + '</h4><div id="deal-notes">' + (d.notes.length ? d.notes.map(function (n) {
        return '<div class="note"><div class="note__time">' + esc(n.time) + '</div><div class="note__text">' + esc(n.text) + '</div></div>';
      }).join('') : '<p class="hint">' + esc(t('no_notes')) + '</p>') + '</div>';
  }

  // The widget's panel loads its data once (and then every 20 s), as in
  // amoCRM; the page reloads it when the deal's order changes, as amoCRM
  // re-renders the card when a deal changes.
  function syncCard() {
    var d = state.deal;
    var key = d ? [d.id, d.stage, JSON.stringify(d.order), lang].join('|') : '';
    if (key === cardKey) { return; }
    cardKey = key;
    $('card-frame').src = d ? '/card?lead=' + d.id + '&lang=' + lang : 'about:blank';
  }

  function changed(name, value) {
    var j = JSON.stringify(value);
    if (drawn[name] === j) { return false; }
    drawn[name] = j;
    return true;
  }

  function draw() {
    $('account').textContent = state.account;
    if (!executor && state.executors.length) { executor = state.executors[0].id; }
    var x = currentExecutor();
    if (changed('board', [state.stages, state.deals, selected])) { drawBoard(); }
    if (changed('group', state.group)) { drawChat($('group'), state.group.title, t('group'), state.group, t('no_messages')); }
    if (changed('tabs', [state.executors.map(function (e) { return e.id; }), executor])) { drawTabs(); }
    if (x && changed('private', [x.chat, x.opened_bot])) {
      drawChat($('private'), x.name + ' @' + x.username, x.opened_bot ? t('private_chat') : t('not_opened'), x.chat, t('no_messages'));
    }
    if (changed('deal', state.deal)) { drawDeal(); }
    syncCard();
  }

  var polling = false;
  function poll() {
    if (polling) { return; }
    polling = true;
    api('GET', '/sandbox/state' + (selected ? '?lead=' + selected : '')).then(function (s) {
      state = s;
      draw();
    }, function (e) { toast(t('error') + e.message, true); }).then(function () { polling = false; });
  }

  function move(lead, stage) {
    api('POST', '/sandbox/move', { lead_id: lead, stage_id: stage }).then(poll, function (e) { toast(t('error') + e.message, true); });
  }

  function select(lead) {
    selected = lead;
    history.replaceState(null, '', lead ? '?lead=' + lead : '/');
    poll();
  }

  document.addEventListener('click', function (ev) {
    var el = ev.target.closest('button, .deal-card');
    if (!el) { return; }
    if (el.classList.contains('move')) {
      var card = el.closest('.deal-card');
      move(Number(card.getAttribute('data-id')), Number(el.getAttribute('data-stage')));
    } else if (el.classList.contains('deal-card')) {
      select(Number(el.getAttribute('data-id')));
    } else if (el.classList.contains('exec-tab')) {
      executor = Number(el.getAttribute('data-id'));
      draw();
    } else if (el.classList.contains('kb')) {
      var who = currentExecutor();
      el.disabled = true;
      api('POST', '/sandbox/press', {
        chat_id: Number(el.getAttribute('data-chat')), message_id: Number(el.getAttribute('data-message')),
        user_id: who.id, data: el.getAttribute('data-data')
      }).then(function (r) {
        toast(t('press_as') + who.name + ': ' + r.answer + (r.opened_bot ? ' — ' + t('opened_bot') : ''));
        poll();
      }, function (e) { toast(t('error') + e.message, true); }).then(function () { el.disabled = false; });
    } else if (el.id === 'lang') {
      lang = lang === 'ru' ? 'en' : 'ru';
      localStorage.setItem('sandbox.lang', lang);
      applyLang();
    }
  });

  document.addEventListener('dragstart', function (ev) {
    var card = ev.target.closest && ev.target.closest('.deal-card');
    if (card) { ev.dataTransfer.setData('text/plain', card.getAttribute('data-id')); }
  });
  document.addEventListener('dragover', function (ev) {
    if (ev.target.closest && ev.target.closest('.column')) { ev.preventDefault(); }
  });
  document.addEventListener('drop', function (ev) {
    var col = ev.target.closest && ev.target.closest('.column');
    var lead = Number(ev.dataTransfer.getData('text/plain'));
    if (!col || !lead) { return; }
    ev.preventDefault();
    move(lead, Number(col.getAttribute('data-stage')));
  });

  applyLang();
  poll();
  setInterval(poll, 1000);
})();
