package widgetcheck

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
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

// Support is the operator's contact shown in amoCRM's marketplace card
// (manifest.json widget.support); empty values keep the folder's.
type Support struct {
	Email string
	Link  string
}

// withSupport rewrites manifest.json's support block.
func withSupport(manifest []byte, s Support) ([]byte, error) {
	if s == (Support{}) {
		return manifest, nil
	}
	var m map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	w, _ := m["widget"].(map[string]any)
	if w == nil {
		return nil, fmt.Errorf("%s: no widget object", ManifestFile)
	}
	sup, _ := w["support"].(map[string]any)
	if sup == nil {
		sup = map[string]any{}
	}
	if s.Email != "" {
		if _, err := mail.ParseAddress(s.Email); err != nil || strings.ContainsAny(s.Email, "<> ") {
			return nil, fmt.Errorf("support e-mail %q is not an address", s.Email)
		}
		sup["email"] = s.Email
	}
	if s.Link != "" {
		if u, err := url.Parse(s.Link); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("support link %q must be an https URL", s.Link)
		}
		sup["link"] = s.Link
	}
	w["support"] = sup
	return json.MarshalIndent(m, "", "  ")
}

// Pack checks the widget folder and writes widget.zip with manifest.json at
// the archive root. backendURL ("" to keep the placeholder) goes into config.js.
func Pack(fsys fs.FS, w io.Writer, backendURL string, support Support) error {
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
		switch p {
		case ConfigFile:
			b = Substitute(b, backendURL)
		case ManifestFile:
			if b, err = withSupport(b, support); err != nil {
				return err
			}
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
