// amoDispatch widget: a thin router. amoCRM calls the callbacks; each one
// hands over to a small module under js/ (loaded relative to the widget's
// path) and the markup lives in templates/. Backend calls go only through
// self.$authorizedAjax (js/api.js), which adds amoCRM's disposable X-Auth-Token.
define(['jquery'], function ($) {
  'use strict';

  var CODE = 'amodispatch'; // prefix of CSS classes and jQuery event namespaces

  return function () {
    var self = this;
    var modules = null; // promise of the loaded modules
    var views = [];     // mounted views, destroyed in callbacks.destroy

    function path(file) {
      var base = (self.params && self.params.path) || '';
      var v = (self.params && self.params.version) || '';
      return base + '/' + file + (v ? '?v=' + encodeURIComponent(v) : '');
    }

    function load() {
      if (!modules) {
        var d = $.Deferred();
        require([path('config.js'), path('js/i18n.js'), path('js/api.js'), path('js/settings.js'), path('js/card.js'),
          path('templates/settings.js'), path('templates/card.js')],
        function (config, i18n, api, settings, card, settingsTpl, cardTpl) {
          var t = i18n(self);
          var ctx = { self: self, $: $, code: CODE, t: t, api: api(self, config, t) };
          d.resolve({
            settings: settings(ctx, settingsTpl(t)),
            card: card(ctx, cardTpl(t))
          });
        }, function (err) { d.reject(err); });
        modules = d.promise();
      }
      return modules;
    }

    function mount(fn) {
      return load().then(function (m) {
        var view = fn(m);
        if (view) { views.push(view); }
      });
    }

    function addStyle() {
      if (!$('link[data-' + CODE + '-style]').length) {
        $('head').append($('<link rel="stylesheet" type="text/css">')
          .attr('href', path('style.css')).attr('data-' + CODE + '-style', '1'));
      }
    }

    this.callbacks = {
      init: function () {
        addStyle();
        load();
        return true;
      },
      render: function () {
        if (self.system().area === 'lcard') {
          mount(function (m) { return m.card.mount(); });
        }
        return true;
      },
      bind_actions: function () {
        return true; // views bind their own namespaced events when mounted
      },
      settings: function ($modal) {
        mount(function (m) { return m.settings.mountModal($modal); });
        return true;
      },
      advancedSettings: function () {
        mount(function (m) { return m.settings.mountAdvanced(); });
        return true;
      },
      onSave: function () {
        return true; // nothing secret or essential lives in the install settings
      },
      destroy: function () {
        $.each(views, function (_, v) { v.destroy(); });
        views = [];
      },
      contacts: { selected: function () { return true; } },
      leads: { selected: function () { return true; } },
      tasks: { selected: function () { return true; } }
    };
    return this;
  };
});
