package widgetcheck

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"
	"time"
)

// NormalizeBackendURL checks a backend base URL and drops a trailing slash.
func NormalizeBackendURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q", ErrBadBackendURL, raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Substitute puts the backend URL into config.js. An empty URL leaves the
// placeholder, and the widget then says it is not configured.
func Substitute(configJS []byte, backendURL string) []byte {
	if backendURL == "" {
		return configJS
	}
	return bytes.ReplaceAll(configJS, []byte(Placeholder), []byte(backendURL))
}

// skipped are paths that belong to the repository, not the archive.
func skipped(p string, d fs.DirEntry) bool {
	base := d.Name()
	return strings.HasPrefix(base, ".") || p == "screenshots" || strings.HasPrefix(p, "screenshots/") ||
		(!d.IsDir() && strings.HasSuffix(base, ".md"))
}

// Pack checks the widget folder and writes widget.zip with manifest.json at
// the archive root. backendURL ("" to keep the placeholder) goes into config.js.
func Pack(fsys fs.FS, w io.Writer, backendURL string) error {
	if backendURL != "" {
		u, err := NormalizeBackendURL(backendURL)
		if err != nil {
			return err
		}
		backendURL = u
	}
	if err := Check(fsys); err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	// Fixed timestamps make the archive reproducible.
	stamp := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if skipped(p, d) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if p == ConfigFile {
			b = Substitute(b, backendURL)
		}
		f, err := zw.CreateHeader(&zip.FileHeader{Name: p, Method: zip.Deflate, Modified: stamp})
		if err != nil {
			return err
		}
		_, err = f.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return zw.Close()
}
