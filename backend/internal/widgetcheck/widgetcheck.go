// Package widgetcheck validates the amoCRM widget folder (widget/) the way
// amoCRM's upload does and a bit stricter, and packs it into widget.zip.
package widgetcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Image is one logo amoCRM requires, with its exact pixel size.
type Image struct {
	Name          string
	Width, Height int
}

// Images are the logos amoCRM requires in images/ (developers docs,
// "images/": logo_min and logo_medium for cards, logo, logo_main and
// logo_small for lists and the marketplace; logo_dp for the digital pipeline).
var Images = []Image{
	{"logo_min.png", 84, 84},
	{"logo_medium.png", 240, 84},
	{"logo_main.png", 400, 272},
	{"logo.png", 130, 100},
	{"logo_small.png", 108, 108},
	{"logo_dp.png", 174, 109},
}

// MaxImageBytes is amoCRM's limit per image file.
const MaxImageBytes = 300 << 10

// RequiredLocations are the places the widget must be loaded.
var RequiredLocations = []string{"lcard-1", "settings", "advanced_settings"}

// Placeholder in config.js that Pack replaces with the backend's base URL.
const Placeholder = "{{BACKEND_URL}}"

// ConfigFile holds the backend URL placeholder.
const ConfigFile = "config.js"

// ManifestFile describes the widget to amoCRM.
const ManifestFile = "manifest.json"

// Problems is every failed check of one run.
type Problems []string

func (p Problems) Error() string { return "widget check failed:\n  - " + strings.Join(p, "\n  - ") }

// Check validates the widget folder. It returns nil or Problems.
func Check(fsys fs.FS) error {
	c := &checker{fsys: fsys}
	c.run()
	if len(c.problems) == 0 {
		return nil
	}
	return c.problems
}

type checker struct {
	fsys     fs.FS
	problems Problems
	langs    map[string]map[string]any
}

func (c *checker) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

type manifest struct {
	Widget struct {
		Name             *string  `json:"name"`
		Description      *string  `json:"description"`
		ShortDescription *string  `json:"short_description"`
		Version          *string  `json:"version"`
		InterfaceVersion *int     `json:"interface_version"`
		InitOnce         *bool    `json:"init_once"`
		Locale           []string `json:"locale"`
		Installation     *bool    `json:"installation"`
		Support          *struct {
			Link  string `json:"link"`
			Email string `json:"email"`
		} `json:"support"`
	} `json:"widget"`
	Locations []string `json:"locations"`
	Settings  map[string]struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Required *bool  `json:"required"`
	} `json:"settings"`
	Advanced *struct {
		Title string `json:"title"`
	} `json:"advanced"`
}

var versionRe = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

func (c *checker) run() {
	raw, err := fs.ReadFile(c.fsys, ManifestFile)
	if err != nil {
		c.fail("manifest.json: %v", err)
		return
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		c.fail("manifest.json is not valid JSON: %v", err)
		return
	}
	w := m.Widget
	keys := map[string]string{} // manifest place → i18n key
	for place, v := range map[string]*string{"widget.name": w.Name, "widget.description": w.Description, "widget.short_description": w.ShortDescription} {
		if v == nil || *v == "" {
			c.fail("manifest.json: %s is required", place)
			continue
		}
		keys[place] = *v
	}
	switch {
	case w.Version == nil:
		c.fail("manifest.json: widget.version is required")
	case !versionRe.MatchString(*w.Version):
		c.fail("manifest.json: widget.version %q is not MAJOR.MINOR.PATCH", *w.Version)
	}
	if w.InterfaceVersion == nil || *w.InterfaceVersion != 2 {
		c.fail("manifest.json: widget.interface_version must be 2")
	}
	if w.InitOnce == nil {
		c.fail("manifest.json: widget.init_once is required")
	}
	if w.Installation == nil || !*w.Installation {
		c.fail("manifest.json: widget.installation must be true")
	}
	if w.Support == nil || w.Support.Link == "" || w.Support.Email == "" {
		c.fail("manifest.json: widget.support needs link and email")
	}
	if len(w.Locale) == 0 {
		c.fail("manifest.json: widget.locale is required")
	}
	for _, l := range []string{"ru", "en"} {
		if !slices.Contains(w.Locale, l) {
			c.fail("manifest.json: widget.locale lacks %q", l)
		}
	}
	for _, loc := range RequiredLocations {
		if !slices.Contains(m.Locations, loc) {
			c.fail("manifest.json: locations lacks %q", loc)
		}
	}
	if m.Settings == nil {
		c.fail("manifest.json: settings section is required")
	}
	for name, s := range m.Settings {
		if s.Name == "" || s.Type == "" {
			c.fail("manifest.json: settings.%s needs name and type", name)
		}
		keys["settings."+name+".name"] = s.Name
	}
	if m.Advanced == nil || m.Advanced.Title == "" {
		c.fail("manifest.json: advanced.title is required (advanced_settings location)")
	} else {
		keys["advanced.title"] = m.Advanced.Title
	}

	c.loadLangs(w.Locale)
	places := make([]string, 0, len(keys))
	for p := range keys {
		places = append(places, p)
	}
	sort.Strings(places)
	for _, l := range sortedKeys(c.langs) {
		for _, p := range places {
			if s, ok := lookup(c.langs[l], keys[p]); !ok || s == "" {
				c.fail("i18n/%s.json: key %q (manifest %s) is missing or empty", l, keys[p], p)
			}
		}
	}
	c.compareTrees()
	c.checkScriptKeys()
	c.checkImages()
	for _, f := range []string{"script.js", ConfigFile, "style.css"} {
		if _, err := fs.Stat(c.fsys, f); err != nil {
			c.fail("%s: %v", f, err)
		}
	}
	if b, err := fs.ReadFile(c.fsys, ConfigFile); err == nil && !bytes.Contains(b, []byte(Placeholder)) {
		c.fail("%s: placeholder %s not found", ConfigFile, Placeholder)
	}
}

func (c *checker) loadLangs(locales []string) {
	c.langs = map[string]map[string]any{}
	for _, l := range locales {
		raw, err := fs.ReadFile(c.fsys, "i18n/"+l+".json")
		if err != nil {
			c.fail("i18n/%s.json: %v", l, err)
			continue
		}
		var tree map[string]any
		if err := json.Unmarshal(raw, &tree); err != nil {
			c.fail("i18n/%s.json is not valid JSON: %v", l, err)
			continue
		}
		c.langs[l] = tree
	}
}

// compareTrees requires every language file to have the same keys, and
// every leaf to be a non-empty string.
func (c *checker) compareTrees() {
	all := map[string]map[string]bool{}
	for l, tree := range c.langs {
		all[l] = map[string]bool{}
		walk(tree, "", func(key string, v any) {
			all[l][key] = true
			if s, ok := v.(string); !ok || strings.TrimSpace(s) == "" {
				c.fail("i18n/%s.json: %q must be a non-empty string", l, key)
			}
		})
	}
	langs := sortedKeys(c.langs)
	for _, a := range langs {
		for _, b := range langs {
			if a == b {
				continue
			}
			var missing []string
			for k := range all[a] {
				if !all[b][k] {
					missing = append(missing, k)
				}
			}
			sort.Strings(missing)
			for _, k := range missing {
				c.fail("i18n key trees differ: %q is in %s.json but not in %s.json", k, a, b)
			}
		}
	}
}

// tCall matches t('ui.x.y') in the widget's JavaScript.
var tCall = regexp.MustCompile(`\bt\(\s*'([A-Za-z0-9_.]+)'`)

// checkScriptKeys requires every literal i18n key used by the JavaScript to
// exist in every language.
func (c *checker) checkScriptKeys() {
	_ = fs.WalkDir(c.fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".js" {
			return nil
		}
		b, err := fs.ReadFile(c.fsys, p)
		if err != nil {
			return nil
		}
		for _, m := range tCall.FindAllSubmatch(b, -1) {
			for _, l := range sortedKeys(c.langs) {
				if _, ok := lookup(c.langs[l], string(m[1])); !ok {
					c.fail("%s uses i18n key %q, missing in i18n/%s.json", p, m[1], l)
				}
			}
		}
		return nil
	})
}

func (c *checker) checkImages() {
	for _, img := range Images {
		p := "images/" + img.Name
		b, err := fs.ReadFile(c.fsys, p)
		if err != nil {
			c.fail("%s: %v", p, err)
			continue
		}
		if len(b) > MaxImageBytes {
			c.fail("%s: %d bytes, amoCRM allows %d", p, len(b), MaxImageBytes)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			c.fail("%s: not a PNG: %v", p, err)
			continue
		}
		if cfg.Width != img.Width || cfg.Height != img.Height {
			c.fail("%s: %dx%d, must be %dx%d", p, cfg.Width, cfg.Height, img.Width, img.Height)
		}
	}
}

func walk(node map[string]any, prefix string, fn func(string, any)) {
	for k, v := range node {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			walk(sub, key, fn)
			continue
		}
		fn(key, v)
	}
}

func lookup(tree map[string]any, key string) (string, bool) {
	var node any = tree
	for _, part := range strings.Split(key, ".") {
		m, ok := node.(map[string]any)
		if !ok {
			return "", false
		}
		if node, ok = m[part]; !ok {
			return "", false
		}
	}
	s, ok := node.(string)
	return s, ok
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ErrBadBackendURL: -backend-url is not an absolute http(s) URL.
var ErrBadBackendURL = errors.New("backend URL must be an absolute http(s) URL without query or fragment")
