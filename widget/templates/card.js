// Markup of the deal card panel (lcard-1, right column).
define([], function () {
  'use strict';

  function esc(v) {
    return String(v == null ? '' : v).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function option(value, label, selected) {
    return '<option value="' + esc(value) + '"' + (selected ? ' selected' : '') + '>' + esc(label) + '</option>';
  }

  return function (t) {
    function when(iso) {
      if (!iso) { return ''; }
      var d = new Date(iso);
      return isNaN(d.getTime()) ? '' : d.toLocaleString();
    }

    var timeline = [];
    var EVENTS = {
      posted: 'ui.card.ev_posted', taken: 'ui.card.ev_taken', on_way: 'ui.card.ev_on_way', started: 'ui.card.ev_started',
      done: 'ui.card.ev_done', released: 'ui.card.ev_released', ended: 'ui.card.ev_ended', contact: 'ui.card.ev_contact',
      untaken: 'ui.card.ev_untaken', expired: 'ui.card.ev_expired',
      confirmed: 'ui.card.ev_confirmed'
    };
    // The order's next scheduled step ({kind, at} from the backend): each
    // kind names its text; a kind this version does not know is not shown.
    var NEXT = {
      bump: 'ui.card.next_bump', fallback: 'ui.card.next_fallback', task: 'ui.card.next_task', expire: 'ui.card.next_expire',
      reminder: 'ui.card.next_reminder'
    };
    function who(o) {
      var x = o.executor || {};
      return (x.name || '') + (x.username ? ' @' + x.username : '');
    }
    function lastAt(kind) {
      for (var i = timeline.length - 1; i >= 0; i--) {
        if (timeline[i].kind === kind) { return timeline[i].at; }
      }
      return '';
    }
    // The deal's orders step by step: posted, taken by, on the way, started,
    // done, released, each with its time.
    function history(events) {
      if (!events || !events.length) { return ''; }
      var h = '<div class="amodispatch-timeline"><div class="amodispatch-label">' + esc(t('ui.card.timeline')) + '</div><ul>';
      for (var i = 0; i < events.length; i++) {
        var e = events[i];
        if (!EVENTS[e.kind]) { continue; }
        h += '<li class="amodispatch-event amodispatch-event--' + esc(e.kind) + '"><span class="amodispatch-muted">' + esc(when(e.at)) +
          '</span> ' + esc(t(EVENTS[e.kind], { actor: e.actor })) + '</li>';
      }
      return h + '</ul></div>';
    }

    // The order's next scheduled step, "bump at 14:30", "reminder at 09:00":
    // the clock time is read from the timestamp as the backend wrote it, with
    // the account's UTC offset, so it is the account's time whatever the
    // browser's zone.
    function nextStep(n) {
      if (!n || !NEXT[n.kind]) { return ''; }
      var m = /T(\d\d:\d\d)/.exec(String(n.at || ''));
      if (!m) { return ''; }
      return '<div class="amodispatch-next-step amodispatch-muted amodispatch-next--' + esc(n.kind) + '" data-kind="' + esc(n.kind) + '">' +
        esc(t(NEXT[n.kind], { time: m[1] })) + '</div>';
    }

    function status(o) {
      if (!o) { return t('ui.card.status_none'); }
      var chat = o.chat ? o.chat.title : '';
      switch (o.status) {
        case 'posting': return t('ui.card.status_posting', { chat: chat });
        case 'open': return t('ui.card.status_open', { chat: chat, time: when(o.created_at) });
        case 'taken': return t('ui.card.status_taken', { executor: who(o), time: when(o.taken_at) });
        case 'on_way': return t('ui.card.status_on_way', { executor: who(o), time: when(lastAt(o.status)) });
        case 'started': return t('ui.card.status_started', { executor: who(o), time: when(lastAt(o.status)) });
        case 'done': return t('ui.card.status_done', { executor: who(o) });
        case 'released': return t('ui.card.status_released');
        case 'ended': return t('ui.card.status_ended');
        case 'withdrawn': return t('ui.card.status_withdrawn');
        case 'failed': return t('ui.card.status_failed', { reason: o.fail_reason || '' });
        default: return o.status;
      }
    }

    return {
      // The panel body that amoCRM's render_template places in the card.
      root: function () {
        return '<div class="amodispatch-root amodispatch-card"><p class="amodispatch-muted">' + esc(t('ui.common.loading')) + '</p></div>';
      },
      failure: function (msg) {
        return '<div class="amodispatch-error" role="alert">' + esc(msg) + '</div>' +
          '<button type="button" class="amodispatch-button amodispatch-retry">' + esc(t('ui.common.retry')) + '</button>';
      },
      body: function (deal, chats) {
        timeline = deal.timeline || [];
        var o = deal.order;
        var st = o ? o.status : 'none';
        var opts = option(0, t('ui.common.default_chat'), !deal.target_chat_id);
        for (var i = 0; i < chats.length; i++) {
          var c = chats[i];
          var sel = String(deal.target_chat_id) === String(c.id);
          if (c.active || sel) { opts += option(c.id, c.title, sel); }
        }
        var active = st === 'open' || st === 'posting';
        var h = '<div class="amodispatch-order amodispatch-order--' + esc(st) + '">' + esc(status(o)) + '</div>' + nextStep(deal.next_step) +
          '<label class="amodispatch-label">' + esc(t('ui.card.target_chat')) +
          ' <select class="amodispatch-select amodispatch-target-chat">' + opts + '</select></label><div class="amodispatch-actions">';
        if (!o || st === 'withdrawn' || st === 'failed') {
          h += '<button type="button" class="amodispatch-button amodispatch-button--primary amodispatch-action" data-action="post">' + esc(t('ui.card.post')) + '</button> ';
        }
        if (active) {
          h += '<button type="button" class="amodispatch-button amodispatch-action" data-action="withdraw">' + esc(t('ui.card.withdraw')) + '</button> ';
        }
        if (st === 'taken' || st === 'on_way' || st === 'started') {
          h += '<button type="button" class="amodispatch-button amodispatch-action" data-action="unassign">' + esc(t('ui.card.unassign')) + '</button> ';
        }
        if (o) {
          h += '<button type="button" class="amodispatch-button amodispatch-action" data-action="repost">' + esc(t('ui.card.repost')) + '</button>';
        }
        return h + '</div><div class="amodispatch-status" role="status"></div>' + history(deal.timeline);
      }
    };
  };
});
