// The backend API (/api/widget/...), called only through
// self.$authorizedAjax, which adds amoCRM's disposable X-Auth-Token (a JWT
// signed with the integration's secret). Every call returns a jQuery promise
// that fails with a readable, translated message.
define(['jquery'], function ($) {
  'use strict';
  return function (self, config, t) {
    var base = String(config.backendUrl || '').replace(/\/+$/, '');
    var configured = /^https?:\/\//.test(base);

    function message(xhr) {
      var body = xhr && xhr.responseJSON;
      if (!body && xhr && xhr.responseText) {
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      }
      var err = body && body.error ? body.error : '';
      if (!xhr || xhr.status === 0) { return t('ui.errors.unreachable'); }
      // The backend answers 401 to a token it cannot place and 404 to an
      // account that has not installed (or has removed) the integration.
      if (xhr.status === 401 || xhr.status === 404) { return t('ui.errors.not_installed'); }
      // 410: amoCRM revoked the account's tokens; a reinstall brings it back.
      if (xhr.status === 410) { return t('ui.errors.revoked'); }
      // 403: a manager's token on an admin's route (settings, the link code).
      if (xhr.status === 403) { return t('ui.errors.forbidden'); }
      if (xhr.status === 400 || xhr.status === 422) { return t('ui.errors.invalid', { error: err || xhr.status }); }
      return t('ui.errors.server', { error: err || xhr.status });
    }

    function call(method, route, body, dataType) {
      var d = $.Deferred();
      if (!configured) {
        return d.reject(t('ui.errors.not_configured'), 0).promise();
      }
      var opts = { url: base + '/api/widget' + route, type: method, method: method, dataType: dataType || 'json', timeout: 15000 };
      if (body !== undefined) {
        opts.contentType = 'application/json';
        opts.data = JSON.stringify(body);
      }
      $.when(self.$authorizedAjax(opts)).then(
        function (data) { d.resolve(data); },
        function (xhr) { d.reject(message(xhr), xhr ? xhr.status : 0); });
      return d.promise();
    }

    return {
      state: function () { return call('GET', '/state'); },
      saveSettings: function (s) { return call('PUT', '/settings', s); },
      rotateLinkCode: function () { return call('POST', '/link-code/rotate'); },
      deal: function (id) { return call('GET', '/deals/' + encodeURIComponent(id)); },
      setDealChat: function (id, chatID) { return call('PUT', '/deals/' + encodeURIComponent(id) + '/chat', { chat_id: chatID }); },
      dealAction: function (id, action) { return call('POST', '/deals/' + encodeURIComponent(id) + '/' + action); },
      // q: {period, from, to, pipeline_id}; the admin's figures and their CSV.
      stats: function (q) { return call('GET', '/stats?' + $.param(q)); },
      statsCSV: function (q) { return call('GET', '/stats.csv?' + $.param(q), undefined, 'text'); }
    };
  };
});
