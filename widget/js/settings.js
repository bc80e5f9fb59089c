// The settings modal (a pointer to the advanced page) and the advanced
// settings page: linked chats, per-pipeline rules, order fields, executor
// mapping and the language of posts. Save → PUT /api/widget/settings.
// An admin's page has a second tab, the statistics (GET /api/widget/stats,
// its CSV from /stats.csv).
// Only account admins get the form; the backend refuses anyone else (403),
// so a manager is told so instead of being shown a form that cannot save.
define(['jquery'], function ($) {
  'use strict';
  return function (ctx, tpl) {
    var self = ctx.self, t = ctx.t, api = ctx.api, NS = '.' + ctx.code;

    function ids($els) {
      return $els.map(function () { return Number($(this).val()); }).get();
    }

    // offsets reads "24, 1.5" (hours before the job time, separated by
    // commas or spaces) as minutes; empty is null, the backend's defaults.
    // What is not a number goes as -1, for the backend to refuse.
    function offsets(text) {
      var parts = String(text || '').split(/[,;\s]+/);
      var out = [];
      for (var i = 0; i < parts.length; i++) {
        if (!parts[i]) { continue; }
        var h = Number(parts[i]);
        out.push(isFinite(h) ? Math.round(h * 60) : -1);
      }
      return out.length ? out : null;
    }

    // collect reads the form into the API's settings object, keeping any
    // field this page does not edit.
    function collect($host, base) {
      var s = $.extend({}, base);
      s.language = String($host.find('.amodispatch-language').val() || '');
      var fields = ids($host.find('.amodispatch-field:checked'));
      s.order_field_ids = fields.length ? fields : null;
      s.show_budget = $host.find('.amodispatch-show-budget').is(':checked');
      s.contact_policy = String($host.find('.amodispatch-contact-policy').val() || '');
      s.digest_chat_id = Number($host.find('.amodispatch-digest-chat').val()) || 0;
      s.rules = [];
      $host.find('.amodispatch-rule').each(function () {
        var $r = $(this);
        var triggers = ids($r.find('.amodispatch-trigger:checked'));
        if (!triggers.length) { return; }
        var stages = {};
        $r.find('.amodispatch-status-stage').each(function () {
          var stage = Number($(this).val()) || 0;
          if (stage) { stages[$(this).attr('data-status')] = stage; }
        });
        s.rules.push({
          pipeline_id: Number($r.attr('data-pipeline-id')),
          trigger_stage_ids: triggers,
          found_stage_id: Number($r.find('.amodispatch-found').val()) || 0,
          default_chat_id: Number($r.find('.amodispatch-default-chat').val()) || 0,
          status_stages: stages,
          status_buttons: $r.find('.amodispatch-status-button:checked').map(function () { return $(this).val(); }).get(),
          job_time_field_id: Number($r.find('.amodispatch-job-time-field').val()) || 0,
          reminder_offsets_min: offsets($r.find('.amodispatch-reminder-hours').val()),
          ladder: {
            bump_min: Number($r.find('.amodispatch-ladder-bump').val()) || 0,
            fallback_min: Number($r.find('.amodispatch-ladder-fallback').val()) || 0,
            fallback_chat_id: Number($r.find('.amodispatch-ladder-fallback-chat').val()) || 0,
            task_min: Number($r.find('.amodispatch-ladder-task').val()) || 0,
            expire_hours: Number($r.find('.amodispatch-ladder-expire').val()) || 0
          }
        });
      });
      s.executor_users = {};
      $host.find('.amodispatch-executor-user').each(function () {
        var user = Number($(this).val());
        if (user) { s.executor_users[$(this).attr('data-telegram-id')] = user; }
      });
      return s;
    }

    function status($host, text, isError) {
      $host.find('.amodispatch-status').first()
        .toggleClass('amodispatch-status--error', !!isError).text(text);
    }

    function widgetCode() {
      var s = typeof self.get_settings === 'function' ? self.get_settings() : {};
      return (s && s.widget_code) || (self.params && self.params.widget_code) || ctx.code;
    }

    return {
      mountModal: function ($modal) {
        var $body = $modal && $modal.length ? $modal.find('.widget_settings_block').first() : $();
        if (!$body.length) { $body = $modal || $(); }
        // The one install field is a placeholder amoCRM requires; hide it.
        $body.find('input[name="info"]').closest('.widget_settings_block__item_field').hide();
        var $hint = $(tpl.modal());
        $body.prepend($hint);
        return { destroy: function () { $hint.remove(); } };
      },

      mountAdvanced: function () {
        var $host = $('#work-area-' + widgetCode());
        var state = null;
        $host.html(tpl.loading());
        var $root = $host.children('.amodispatch-advanced');

        function load() {
          $root.html('<p class="amodispatch-muted">' + tpl.esc(t('ui.common.loading')) + '</p>');
          api.state().then(function (st) {
            state = st;
            statsShown = false;
            $root.html(st.is_admin ? tpl.tabs() + '<div class="amodispatch-pane" data-pane="settings">' + tpl.advanced(st) + '</div>' +
              '<div class="amodispatch-pane" data-pane="stats" hidden>' + tpl.statsForm(st) + '</div>' : tpl.managerOnly(st));
            $root.attr('data-amodispatch-ready', '1');
          }, function (msg) {
            $root.html(tpl.failure(msg));
          });
        }

        // Statistics: the query from the form; "custom" needs both dates.
        var statsShown = false;
        function statsQuery() {
          var q = { period: String($root.find('.amodispatch-stats-period').val() || 'today') };
          var pipe = Number($root.find('.amodispatch-stats-pipeline').val()) || 0;
          if (pipe) { q.pipeline_id = pipe; }
          if (q.period === 'custom') {
            q.from = String($root.find('.amodispatch-stats-from').val() || '');
            q.to = String($root.find('.amodispatch-stats-to').val() || '');
          }
          return q;
        }
        function statsStatus(text, isError) {
          $root.find('.amodispatch-stats-status').toggleClass('amodispatch-status--error', !!isError).text(text);
        }
        function loadStats() {
          var q = statsQuery();
          if (q.period === 'custom' && (!q.from || !q.to)) { return; }
          statsStatus(t('ui.common.loading'));
          api.stats(q).then(function (v) {
            statsStatus('');
            $root.find('.amodispatch-stats-result').html(tpl.statsResult(v)).attr('data-amodispatch-ready', '1');
          }, function (msg) { statsStatus(msg, true); });
        }
        $root.on('click' + NS, '.amodispatch-tab', function () {
          var tab = $(this).attr('data-tab');
          $root.find('.amodispatch-tab').removeClass('amodispatch-tab--active');
          $(this).addClass('amodispatch-tab--active');
          $root.find('.amodispatch-pane').each(function () { $(this).prop('hidden', $(this).attr('data-pane') !== tab); });
          if (tab === 'stats' && !statsShown) { statsShown = true; loadStats(); }
        });
        $root.on('change' + NS, '.amodispatch-stats-period', function () {
          $root.find('.amodispatch-stats-dates').prop('hidden', $(this).val() !== 'custom');
          loadStats();
        });
        $root.on('change' + NS, '.amodispatch-stats-pipeline, .amodispatch-stats-from, .amodispatch-stats-to', loadStats);
        $root.on('click' + NS, '.amodispatch-stats-refresh', loadStats);
        $root.on('click' + NS, '.amodispatch-stats-csv', function () {
          var q = statsQuery();
          api.statsCSV(q).then(function (csv) {
            // A download made here: the backend's answer needs the token
            // header, which a plain link cannot carry.
            var url = URL.createObjectURL(new Blob([csv], { type: 'text/csv;charset=utf-8' }));
            var $a = $('<a>').attr({ href: url, download: 'amodispatch-stats-' + (q.from || q.period) + '.csv' }).appendTo('body');
            $a[0].click();
            $a.remove();
            setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
          }, function (msg) { statsStatus(msg, true); });
        });
        $root.on('click' + NS, '.amodispatch-retry', load);
        $root.on('click' + NS, '.amodispatch-save', function () {
          var $btn = $(this).prop('disabled', true);
          status($root, t('ui.advanced.saving'));
          api.saveSettings(collect($root, state.settings)).then(function (saved) {
            state.settings = saved;
            status($root, t('ui.advanced.saved'));
          }, function (msg) {
            status($root, msg, true);
          }).always(function () { $btn.prop('disabled', false); });
        });
        $root.on('click' + NS, '.amodispatch-rotate-code', function () {
          var $btn = $(this).prop('disabled', true);
          api.rotateLinkCode().then(function (r) {
            state.bot = r.bot;
            $root.find('.amodispatch-chats').replaceWith(tpl.chats(state));
            $root.find('.amodispatch-code-status').removeClass('amodispatch-status--error').text(t('ui.advanced.code_rotated'));
          }, function (msg) {
            $btn.prop('disabled', false);
            $root.find('.amodispatch-code-status').addClass('amodispatch-status--error').text(msg);
          });
        });
        load();
        return { destroy: function () { $root.off(NS); $host.empty(); } };
      }
    };
  };
});
