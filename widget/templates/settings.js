// Markup of the settings modal hint and the advanced settings page.
// Every dynamic value goes through esc(); every label through t().
define([], function () {
  'use strict';

  function esc(v) {
    return String(v == null ? '' : v).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function has(list, id) {
    for (var i = 0; list && i < list.length; i++) { if (String(list[i]) === String(id)) { return true; } }
    return false;
  }
  function option(value, label, selected) {
    return '<option value="' + esc(value) + '"' + (selected ? ' selected' : '') + '>' + esc(label) + '</option>';
  }

  return function (t) {
    // chats lists the linked groups; with links (an admin's page) also the
    // bot's deep link, the /link command and the button that changes the code.
    function chats(st, withLinks) {
      var h = '<section class="amodispatch-section amodispatch-chats"><h3 class="amodispatch-h">' + esc(t('ui.advanced.chats_title')) + '</h3>';
      if (!st.chats || !st.chats.length) {
        h += '<p class="amodispatch-muted amodispatch-no-chats">' + esc(t('ui.advanced.no_chats')) + '</p>';
      } else {
        h += '<ul class="amodispatch-chat-list">';
        for (var i = 0; i < st.chats.length; i++) {
          var c = st.chats[i];
          h += '<li class="amodispatch-chat" data-chat-id="' + esc(c.id) + '">' +
            '<span class="amodispatch-chat-title">' + esc(c.title) + '</span> ' +
            '<span class="amodispatch-badge amodispatch-badge--' + (c.active ? 'active' : 'inactive') + '">' +
            esc(t(c.active ? 'ui.common.active' : 'ui.common.inactive')) + '</span></li>';
        }
        h += '</ul>';
      }
      if (!withLinks) {
        return h + '</section>';
      }
      if (st.bot) {
        h += '<p><a class="amodispatch-button amodispatch-startgroup" target="_blank" rel="noopener" href="' + esc(st.bot.startgroup_url) + '">' +
          esc(t('ui.advanced.link_button')) + '</a></p>' +
          '<p class="amodispatch-muted">' + esc(t('ui.advanced.link_command')) + ' <code class="amodispatch-link-command">' + esc(st.bot.link_command) + '</code></p>' +
          '<p class="amodispatch-muted">' + esc(t('ui.advanced.link_once')) + '</p>' +
          '<p><button type="button" class="amodispatch-button amodispatch-rotate-code">' + esc(t('ui.advanced.rotate_code')) + '</button> ' +
          '<span class="amodispatch-muted">' + esc(t('ui.advanced.rotate_hint')) + '</span>' +
          '<span class="amodispatch-code-status" role="status"></span></p>';
      } else {
        h += '<p class="amodispatch-muted">' + esc(t('ui.advanced.bot_missing')) + '</p>';
      }
      return h + '</section>';
    }

    function rules(st) {
      var s = st.settings || {};
      var h = '<section class="amodispatch-section amodispatch-rules"><h3 class="amodispatch-h">' + esc(t('ui.advanced.rules_title')) + '</h3>';
      for (var i = 0; i < (st.pipelines || []).length; i++) {
        var p = st.pipelines[i];
        var rule = {};
        for (var j = 0; j < (s.rules || []).length; j++) { if (String(s.rules[j].pipeline_id) === String(p.id)) { rule = s.rules[j]; } }
        h += '<div class="amodispatch-rule" data-pipeline-id="' + esc(p.id) + '"><h4 class="amodispatch-rule-name">' + esc(p.name) + '</h4>' +
          '<div class="amodispatch-label">' + esc(t('ui.advanced.trigger_stages')) + '</div><div class="amodispatch-checks">';
        var found = option(0, t('ui.advanced.found_none'), !rule.found_stage_id);
        for (var k = 0; k < (p.stages || []).length; k++) {
          var stg = p.stages[k];
          // 142/143 (won/lost) close a deal: they cannot mean "searching".
          if (String(stg.id) !== '142' && String(stg.id) !== '143') {
            h += '<label class="amodispatch-check"><input type="checkbox" class="amodispatch-trigger" value="' + esc(stg.id) + '"' +
              (has(rule.trigger_stage_ids, stg.id) ? ' checked' : '') + '> ' + esc(stg.name) + '</label>';
          }
          found += option(stg.id, stg.name, String(rule.found_stage_id) === String(stg.id));
        }
        h += '</div><label class="amodispatch-label">' + esc(t('ui.advanced.found_stage')) +
          ' <select class="amodispatch-select amodispatch-found">' + found + '</select></label>';
        var chatOpts = option(0, t('ui.common.not_selected'), !rule.default_chat_id);
        for (var m = 0; m < (st.chats || []).length; m++) {
          var c = st.chats[m];
          var sel = String(rule.default_chat_id) === String(c.id);
          if (c.active || sel) { chatOpts += option(c.id, c.title, sel); }
        }
        h += '<label class="amodispatch-label">' + esc(t('ui.advanced.default_chat')) +
          ' <select class="amodispatch-select amodispatch-default-chat">' + chatOpts + '</select></label>' + statuses(p, rule) +
          reminders(st, rule) + ladder(st, rule) + '</div>';
      }
      return h + '</section>';
    }

    // Per pipeline: which status buttons the executor's card shows, and the
    // stage each status moves the deal to (release always returns it to the search).
    var STATUSES = [
      { id: 'on_way', label: 'ui.advanced.status_on_way', stage: true },
      { id: 'started', label: 'ui.advanced.status_started', stage: true },
      { id: 'done', label: 'ui.advanced.status_done', stage: true },
      { id: 'released', label: 'ui.advanced.status_released', stage: false }
    ];
    function statuses(p, rule) {
      var stages = rule.status_stages || {};
      var buttons = rule.status_buttons; // null: every button
      var h = '<div class="amodispatch-label">' + esc(t('ui.advanced.statuses_title')) + '</div><table class="amodispatch-table amodispatch-statuses">';
      for (var i = 0; i < STATUSES.length; i++) {
        var x = STATUSES[i];
        var on = !buttons || has(buttons, x.id);
        h += '<tr><td><label class="amodispatch-check"><input type="checkbox" class="amodispatch-status-button" value="' + esc(x.id) + '"' +
          (on ? ' checked' : '') + '> ' + esc(t(x.label)) + '</label></td><td>';
        if (x.stage) {
          var opts = option(0, t('ui.advanced.status_stage_none'), !stages[x.id]);
          for (var k = 0; k < (p.stages || []).length; k++) {
            var stg = p.stages[k];
            if (has(rule.trigger_stage_ids, stg.id)) { continue; }
            opts += option(stg.id, stg.name, String(stages[x.id]) === String(stg.id));
          }
          h += '<select class="amodispatch-select amodispatch-status-stage" data-status="' + esc(x.id) + '">' + opts + '</select>';
        }
        h += '</td></tr>';
      }
      return h + '</table>';
    }

    // Per pipeline: the escalation of an order nobody takes. A rule saved
    // before the ladder existed shows the backend's defaults.
    var LADDER_DEFAULT = { bump_min: 15, fallback_min: 0, fallback_chat_id: 0, task_min: 60, expire_hours: 0 };
    function ladder(st, rule) {
      var l = rule.ladder || LADDER_DEFAULT;
      function num(cls, label, value, unit, max) {
        return '<label class="amodispatch-label">' + esc(t(label)) + ' <input type="number" min="0" step="1" max="' + max +
          '" class="amodispatch-input amodispatch-ladder-' + cls + '" value="' + esc(value || 0) + '"> ' + esc(t(unit)) + '</label>';
      }
      var chatOpts = option(0, t('ui.common.not_selected'), !l.fallback_chat_id);
      for (var m = 0; m < (st.chats || []).length; m++) {
        var c = st.chats[m];
        var sel = String(l.fallback_chat_id) === String(c.id);
        if (c.active || sel) { chatOpts += option(c.id, c.title, sel); }
      }
      return '<fieldset class="amodispatch-ladder"><legend class="amodispatch-label">' + esc(t('ui.advanced.ladder_title')) + '</legend>' +
        num('bump', 'ui.advanced.ladder_bump', l.bump_min, 'ui.advanced.ladder_min', 10080) +
        num('fallback', 'ui.advanced.ladder_fallback', l.fallback_min, 'ui.advanced.ladder_min', 10080) +
        '<label class="amodispatch-label">' + esc(t('ui.advanced.ladder_fallback_chat')) +
        ' <select class="amodispatch-select amodispatch-ladder-fallback-chat">' + chatOpts + '</select></label>' +
        num('task', 'ui.advanced.ladder_task', l.task_min, 'ui.advanced.ladder_min', 10080) +
        num('expire', 'ui.advanced.ladder_expire', l.expire_hours, 'ui.advanced.ladder_hours', 720) + '</fieldset>';
    }
    // Per pipeline: the deal field holding the job time (date or date_time)
    // and how many hours before it the executor is reminded; offsets come
    // and go in minutes (null: the backend's defaults, 24 h and 1 h).
    function hours(mins) {
      var out = [];
      for (var i = 0; i < mins.length; i++) { out.push(String(Math.round(mins[i] / 6) / 10)); }
      return out.join(', ');
    }
    function reminders(st, rule) {
      var opts = option(0, t('ui.advanced.job_time_none'), !rule.job_time_field_id);
      for (var i = 0; i < (st.fields || []).length; i++) {
        var f = st.fields[i];
        var sel = String(rule.job_time_field_id) === String(f.id);
        if (f.type === 'date' || f.type === 'date_time' || sel) { opts += option(f.id, f.name, sel); }
      }
      var offs = rule.reminder_offsets_min ? hours(rule.reminder_offsets_min) : '';
      return '<div class="amodispatch-reminders"><label class="amodispatch-label">' + esc(t('ui.advanced.job_time_field')) +
        ' <select class="amodispatch-select amodispatch-job-time-field">' + opts + '</select></label>' +
        '<label class="amodispatch-label">' + esc(t('ui.advanced.reminder_hours')) +
        ' <input type="text" class="amodispatch-input amodispatch-reminder-hours" placeholder="24, 1" value="' + esc(offs) + '"></label>' +
        '<p class="amodispatch-muted">' + esc(t('ui.advanced.reminder_hint')) + '</p></div>';
    }

    function contactPolicy(st) {
      var cur = (st.settings || {}).contact_policy || '';
      return '<section class="amodispatch-section amodispatch-contact-section"><h3 class="amodispatch-h">' + esc(t('ui.advanced.contact_title')) + '</h3>' +
        '<select class="amodispatch-select amodispatch-contact-policy">' +
        option('', t('ui.advanced.contact_any'), cur === '') +
        option('executor', t('ui.advanced.contact_executor'), cur === 'executor') + '</select></section>';
    }

    function fields(st) {
      var s = st.settings || {};
      var h = '<section class="amodispatch-section amodispatch-fields"><h3 class="amodispatch-h">' + esc(t('ui.advanced.fields_title')) + '</h3>' +
        '<p class="amodispatch-muted">' + esc(t('ui.advanced.fields_hint')) + '</p>' +
        '<p class="amodispatch-muted amodispatch-privacy">' + esc(t('ui.advanced.fields_privacy')) + '</p><div class="amodispatch-checks">';
      for (var i = 0; i < (st.fields || []).length; i++) {
        var f = st.fields[i];
        h += '<label class="amodispatch-check"><input type="checkbox" class="amodispatch-field" value="' + esc(f.id) + '"' +
          (has(s.order_field_ids, f.id) ? ' checked' : '') + '> ' + esc(f.name) + '</label>';
      }
      return h + '</div><label class="amodispatch-check"><input type="checkbox" class="amodispatch-show-budget"' + (s.show_budget ? ' checked' : '') + '> ' +
        esc(t('ui.advanced.show_budget')) + '</label></section>';
    }

    function executors(st) {
      var s = st.settings || {};
      var map = s.executor_users || {};
      var h = '<section class="amodispatch-section amodispatch-executors"><h3 class="amodispatch-h">' + esc(t('ui.advanced.executors_title')) + '</h3>';
      if (!st.executors || !st.executors.length) {
        return h + '<p class="amodispatch-muted">' + esc(t('ui.advanced.no_executors')) + '</p></section>';
      }
      h += '<p class="amodispatch-muted">' + esc(t('ui.advanced.executors_hint')) + '</p><table class="amodispatch-table">';
      for (var i = 0; i < st.executors.length; i++) {
        var x = st.executors[i];
        var cur = map[String(x.telegram_id)];
        var opts = option(0, t('ui.advanced.executor_user_none'), !cur);
        for (var j = 0; j < (st.users || []).length; j++) {
          opts += option(st.users[j].id, st.users[j].name, String(cur) === String(st.users[j].id));
        }
        // An executor only mapped, who never worked on this account's orders, comes by id alone.
        h += '<tr><td>' + esc(x.name || ('ID ' + x.telegram_id)) + (x.username ? ' <span class="amodispatch-muted">@' + esc(x.username) + '</span>' : '') + '</td>' +
          '<td><select class="amodispatch-select amodispatch-executor-user" data-telegram-id="' + esc(x.telegram_id) + '">' + opts + '</select></td></tr>';
      }
      return h + '</table></section>';
    }

    // The weekly digest: a linked group gets last week's figures on Mondays.
    function digest(st) {
      var cur = (st.settings || {}).digest_chat_id || 0;
      var opts = option(0, t('ui.advanced.digest_none'), !cur);
      for (var i = 0; i < (st.chats || []).length; i++) {
        var c = st.chats[i];
        if (c.active || String(c.id) === String(cur)) { opts += option(c.id, c.title, String(c.id) === String(cur)); }
      }
      return '<section class="amodispatch-section amodispatch-digest-section"><h3 class="amodispatch-h">' + esc(t('ui.advanced.digest_title')) + '</h3>' +
        '<p class="amodispatch-muted">' + esc(t('ui.advanced.digest_hint')) + '</p>' +
        '<select class="amodispatch-select amodispatch-digest-chat">' + opts + '</select></section>';
    }

    function language(st) {
      var cur = (st.settings || {}).language || '';
      return '<section class="amodispatch-section amodispatch-language-section"><h3 class="amodispatch-h">' + esc(t('ui.advanced.language_title')) + '</h3>' +
        '<select class="amodispatch-select amodispatch-language">' +
        option('', t('ui.advanced.language_auto'), cur === '') +
        option('ru', t('ui.advanced.language_ru'), cur === 'ru') +
        option('en', t('ui.advanced.language_en'), cur === 'en') + '</select></section>';
    }

    // Statistics (admins): a period, an optional pipeline, the figures.
    function duration(sec) {
      if (sec == null) { return '—'; }
      if (sec < 60) { return t('ui.stats.seconds', { n: sec }); }
      if (sec < 3600) { return t('ui.stats.minutes', { m: Math.floor(sec / 60), s: sec % 60 }); }
      return t('ui.stats.hours', { h: Math.floor(sec / 3600), m: Math.floor((sec % 3600) / 60) });
    }
    function share(n, of) {
      return of ? Math.round(100 * n / of) + '%' : '—';
    }
    // A moment in the account's zone as the backend wrote it: "2026-03-02 13:46".
    function moment(rfc) {
      return rfc ? String(rfc).slice(0, 16).replace('T', ' ') : '—';
    }
    function figure(cls, label, value) {
      return '<div class="amodispatch-figure amodispatch-figure--' + cls + '"><div class="amodispatch-figure-value">' + esc(value) +
        '</div><div class="amodispatch-muted">' + esc(label) + '</div></div>';
    }
    function statsForm(st) {
      var periods = option('today', t('ui.stats.today'), true) + option('7d', t('ui.stats.days7'), false) +
        option('30d', t('ui.stats.days30'), false) + option('custom', t('ui.stats.custom'), false);
      var pipes = option(0, t('ui.stats.all_pipelines'), true);
      for (var i = 0; i < (st.pipelines || []).length; i++) { pipes += option(st.pipelines[i].id, st.pipelines[i].name, false); }
      return '<section class="amodispatch-section amodispatch-stats-form"><h3 class="amodispatch-h">' + esc(t('ui.stats.title')) + '</h3>' +
        '<label class="amodispatch-label">' + esc(t('ui.stats.period')) + ' <select class="amodispatch-select amodispatch-stats-period">' + periods + '</select></label> ' +
        '<span class="amodispatch-stats-dates" hidden><input type="date" class="amodispatch-stats-from"> — <input type="date" class="amodispatch-stats-to"></span> ' +
        '<label class="amodispatch-label">' + esc(t('ui.stats.pipeline')) + ' <select class="amodispatch-select amodispatch-stats-pipeline">' + pipes + '</select></label> ' +
        '<button type="button" class="amodispatch-button amodispatch-stats-refresh">' + esc(t('ui.stats.show')) + '</button> ' +
        '<button type="button" class="amodispatch-button amodispatch-stats-csv">' + esc(t('ui.stats.csv')) + '</button> ' +
        '<span class="amodispatch-stats-status" role="status"></span>' +
        '<p class="amodispatch-muted">' + esc(t('ui.stats.hint')) + '</p></section>' +
        '<div class="amodispatch-stats-result"></div>';
    }
    function statsResult(v) {
      var x = v.totals;
      var h = '<section class="amodispatch-section amodispatch-stats-totals"><p class="amodispatch-muted amodispatch-stats-range">' +
        esc(t(v.first_day === v.last_day ? 'ui.stats.range_day' : 'ui.stats.range', { from: v.first_day, to: v.last_day, zone: v.zone })) + '</p><div class="amodispatch-figures">' +
        figure('posted', t('ui.stats.posted'), x.posted) + figure('taken', t('ui.stats.taken'), x.taken) +
        figure('done', t('ui.stats.done'), x.done) + figure('released', t('ui.stats.released'), x.released) +
        figure('withdrawn', t('ui.stats.withdrawn'), x.withdrawn) + figure('never-taken', t('ui.stats.never_taken'), x.never_taken) +
        figure('median', t('ui.stats.take_median'), duration(x.take_median_s)) + figure('p90', t('ui.stats.take_p90'), duration(x.take_p90_s)) +
        figure('within5', t('ui.stats.within_5m'), share(x.taken_within_5m, x.posted)) +
        figure('within15', t('ui.stats.within_15m'), share(x.taken_within_15m, x.posted)) +
        figure('within60', t('ui.stats.within_60m'), share(x.taken_within_60m, x.posted)) + '</div></section>';
      h += '<section class="amodispatch-section amodispatch-stats-executors"><h3 class="amodispatch-h">' + esc(t('ui.stats.executors')) + '</h3>';
      if (!v.executors.length) {
        h += '<p class="amodispatch-muted">' + esc(t('ui.stats.none')) + '</p>';
      } else {
        h += '<table class="amodispatch-table"><tr><th>' + esc(t('ui.stats.executor')) + '</th><th>' + esc(t('ui.stats.taken')) + '</th><th>' +
          esc(t('ui.stats.done')) + '</th><th>' + esc(t('ui.stats.released')) + '</th><th>' + esc(t('ui.stats.done_median')) + '</th><th>' +
          esc(t('ui.stats.last_activity')) + '</th></tr>';
        for (var i = 0; i < v.executors.length; i++) {
          var e = v.executors[i];
          h += '<tr class="amodispatch-stats-executor" data-telegram-id="' + esc(e.telegram_id) + '"><td>' + esc(e.name || ('ID ' + e.telegram_id)) +
            (e.username ? ' <span class="amodispatch-muted">@' + esc(e.username) + '</span>' : '') + '</td><td>' + esc(e.taken) + '</td><td>' +
            esc(e.done) + '</td><td>' + esc(e.released) + '</td><td>' + esc(duration(e.done_median_s)) + '</td><td>' + esc(moment(e.last_activity)) + '</td></tr>';
        }
        h += '</table>';
      }
      h += '</section><section class="amodispatch-section amodispatch-stats-chats"><h3 class="amodispatch-h">' + esc(t('ui.stats.chats')) + '</h3>';
      if (!v.chats.length) {
        return h + '<p class="amodispatch-muted">' + esc(t('ui.stats.none')) + '</p></section>';
      }
      h += '<table class="amodispatch-table"><tr><th>' + esc(t('ui.stats.chat')) + '</th><th>' + esc(t('ui.stats.posted')) + '</th><th>' +
        esc(t('ui.stats.taken')) + '</th><th>' + esc(t('ui.stats.take_median')) + '</th></tr>';
      for (var j = 0; j < v.chats.length; j++) {
        var c = v.chats[j];
        h += '<tr class="amodispatch-stats-chat" data-chat-id="' + esc(c.chat_id) + '"><td>' + esc(c.title || ('ID ' + c.chat_id)) + '</td><td>' +
          esc(c.posted) + '</td><td>' + esc(c.taken) + '</td><td>' + esc(duration(c.take_median_s)) + '</td></tr>';
      }
      return h + '</table></section>';
    }

    return {
      esc: esc,
      statsForm: statsForm,
      statsResult: statsResult,
      // The admin's page: settings, or statistics.
      tabs: function () {
        return '<div class="amodispatch-tabs" role="tablist">' +
          '<button type="button" role="tab" class="amodispatch-tab amodispatch-tab--active" data-tab="settings">' + esc(t('ui.stats.tab_settings')) + '</button>' +
          '<button type="button" role="tab" class="amodispatch-tab" data-tab="stats">' + esc(t('ui.stats.tab_stats')) + '</button></div>';
      },
      loading: function () {
        return '<div class="amodispatch-root amodispatch-advanced"><p class="amodispatch-muted">' + esc(t('ui.common.loading')) + '</p></div>';
      },
      failure: function (msg) {
        return '<div class="amodispatch-error" role="alert">' + esc(msg) + '</div>' +
          '<button type="button" class="amodispatch-button amodispatch-retry">' + esc(t('ui.common.retry')) + '</button>';
      },
      chats: function (st) { return chats(st, true); },
      // What a manager sees instead of the form: who may change it, and the groups.
      managerOnly: function (st) {
        return '<p class="amodispatch-admin-only" role="note">' + esc(t('ui.advanced.admin_only')) + '</p>' + chats(st, false);
      },
      advanced: function (st) {
        return chats(st, true) + rules(st) + contactPolicy(st) + fields(st) + executors(st) + language(st) + digest(st) +
          '<div class="amodispatch-actions"><button type="button" class="amodispatch-button amodispatch-button--primary amodispatch-save">' +
          esc(t('ui.advanced.save')) + '</button> <span class="amodispatch-status" role="status"></span></div>';
      },
      modal: function () {
        return '<div class="amodispatch-root amodispatch-modal-hint"><p>' + esc(t('ui.settings_modal.hint')) + '</p></div>';
      }
    };
  };
});
