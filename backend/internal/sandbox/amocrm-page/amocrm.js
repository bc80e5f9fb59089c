// A stand-in for the parts of amoCRM's page a widget uses. The Go test's page
// server puts the page's settings in window.__AMO (area, language file, lead,
// account) and serves /__token (a fresh disposable JWT per call).
(function () {
  'use strict';
  var cfg = window.__AMO;
  var $ = window.jQuery;
  window.__widgetErrors = [];
  window.onerror = function (msg) { window.__widgetErrors.push(String(msg)); };
  requirejs.onError = function (err) { window.__widgetErrors.push('require: ' + err); };

  window.AMOCRM = {
    lang: cfg.lang,
    data: { current_card: cfg.leadId ? { id: cfg.leadId, model: {} } : null },
    constant: function (name) { return name === 'account' ? { id: cfg.accountId, subdomain: cfg.subdomain } : null; }
  };

  var installSettings = { widget_code: cfg.widgetCode, path: cfg.widgetPath, active: 'Y', status: 'installed' };
  var base = {
    params: { path: cfg.widgetPath, widget_code: cfg.widgetCode, version: cfg.version },
    langs: cfg.langs,
    i18n: function (key) { return cfg.langs[key]; },
    get_settings: function () { return $.extend({}, installSettings); },
    set_settings: function (s) { $.extend(installSettings, s); },
    get_version: function () { return cfg.version; },
    system: function () {
      return { area: cfg.area, amouser_id: cfg.userId, amouser: 'admin@' + cfg.subdomain + '.test',
        amohash: '', domain: cfg.subdomain + '.amocrm.ru', subdomain: cfg.subdomain };
    },
    // render_template puts a card widget block into the right column.
    render_template: function (opts) {
      var caption = (opts.caption && opts.caption.class_name) || '';
      $('#widgets_block').append('<div class="card-widgets__widget"><div class="card-widgets__widget__caption ' + caption +
        '">' + $('<i>').text(cfg.langs.widget.name).html() + '</div><div class="card-widgets__widget__body">' +
        (opts.body || '') + (opts.render || '') + '</div></div>');
    },
    render: function () { throw new Error('twig render is not used by this widget'); },
    // As amoCRM's: a jQuery ajax call with a fresh disposable token.
    $authorizedAjax: function (opts) {
      return $.ajax({ url: '/__token', dataType: 'text', cache: false }).then(function (token) {
        var o = $.extend({}, opts);
        o.headers = $.extend({}, opts.headers, { 'X-Auth-Token': token });
        return $.ajax(o);
      });
    }
  };

  require([cfg.widgetPath + '/script.js'], function (Widget) {
    var w = Object.create(base);
    Widget.call(w);
    window.__widget = w;
    w.callbacks.init();
    w.callbacks.render();
    w.callbacks.bind_actions();
    if (cfg.area === 'advanced_settings') { w.callbacks.advancedSettings(); }
    if (cfg.area === 'settings') { w.callbacks.settings($('#widget_settings__modal')); }
  });
})();
