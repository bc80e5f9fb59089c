// The backend's base URL. `go run ./backend/cmd/widgetpack -backend-url https://...`
// replaces the placeholder in the archive; an unreplaced placeholder makes the
// widget show "not configured" instead of calling a wrong host.
define([], function () {
  'use strict';
  return { backendUrl: '{{BACKEND_URL}}' };
});
