// The deal card panel (lcard-1): the order's state, the deal's target chat
// and the Post / Withdraw / Re-post actions.
define(['jquery'], function ($) {
  'use strict';
  var REFRESH_MS = 20000;

  return function (ctx, tpl) {
    var self = ctx.self, t = ctx.t, api = ctx.api, NS = '.' + ctx.code;

    function leadID() {
      var card = window.AMOCRM && AMOCRM.data && AMOCRM.data.current_card;
      return card && card.id ? Number(card.id) : 0;
    }

    return {
      mount: function () {
        var id = leadID();
        if (!id) { return null; } // a new, unsaved deal has no id yet
        self.render_template({ caption: { class_name: 'amodispatch-caption' }, body: '', render: tpl.root() });
        var $root = $('.amodispatch-card').last();
        var chats = [], deal = null, timer = null;

        function status(text, isError) {
          $root.find('.amodispatch-status').toggleClass('amodispatch-status--error', !!isError).text(text);
        }
        function draw() {
          $root.html(tpl.body(deal, chats)).attr('data-amodispatch-ready', '1');
        }
        function load() {
          $.when(api.state(), api.deal(id)).then(function (st, d) {
            chats = st.chats || [];
            deal = d;
            draw();
          }, function (msg) {
            $root.html(tpl.failure(msg));
          });
        }
        function refresh() {
          if (!deal || document.hidden) { return; }
          api.deal(id).then(function (d) {
            var changed = JSON.stringify(d) !== JSON.stringify(deal);
            deal = d;
            if (changed) { draw(); }
          });
        }

        $root.on('click' + NS, '.amodispatch-retry', load);
        $root.on('change' + NS, '.amodispatch-target-chat', function () {
          var chatID = Number($(this).val()) || 0;
          api.setDealChat(id, chatID).then(function (r) {
            deal.target_chat_id = r.target_chat_id;
            status(t('ui.card.target_saved'));
          }, function (msg) { status(msg, true); });
        });
        $root.on('click' + NS, '.amodispatch-action', function () {
          var $btns = $root.find('.amodispatch-action').prop('disabled', true);
          api.dealAction(id, $(this).attr('data-action')).then(function (d) {
            deal = d;
            draw();
            status(t('ui.card.done'));
          }, function (msg) {
            $btns.prop('disabled', false);
            status(msg, true);
          });
        });
        load();
        timer = setInterval(refresh, REFRESH_MS);
        return { destroy: function () { clearInterval(timer); $root.off(NS).remove(); } };
      }
    };
  };
});
