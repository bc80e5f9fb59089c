// t('ui.card.post', {chat: 'X'}): a string of the user's language file
// (i18n/ru.json or en.json, which amoCRM hands over as self.langs /
// self.i18n(section)) with {placeholders} filled in. A missing key shows as
// the key itself, so a gap is visible instead of an empty label.
define([], function () {
  'use strict';
  return function (self) {
    function lookup(key) {
      var parts = key.split('.');
      var node = self.langs || (typeof self.i18n === 'function' ? self.i18n(parts[0]) : null);
      var i = self.langs ? 0 : 1;
      for (; node != null && i < parts.length; i++) {
        node = node[parts[i]];
      }
      return typeof node === 'string' ? node : null;
    }
    return function t(key, vars) {
      var s = lookup(key);
      if (s === null) { return key; }
      return s.replace(/\{(\w+)\}/g, function (m, name) {
        return vars && vars[name] != null ? String(vars[name]) : m;
      });
    };
  };
});
