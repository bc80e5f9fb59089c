package widgetcheck

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

const widgetDir = "../../../widget"

// realWidget copies the repository's widget folder into memory, so each
// case can break its own copy.
func realWidget(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(widgetDir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(os.DirFS(widgetDir), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func editJSON(t *testing.T, m fstest.MapFS, name string, edit func(map[string]any)) {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(m[name].Data, &v); err != nil {
		t.Fatal(err)
	}
	edit(v)
	b, _ := json.Marshal(v)
	m[name] = &fstest.MapFile{Data: b}
}

func sub(v map[string]any, key string) map[string]any { return v[key].(map[string]any) }

func TestRealWidgetPasses(t *testing.T) {
	if err := Check(os.DirFS(widgetDir)); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenWidgetsFail(t *testing.T) {
	cases := map[string]struct {
		breakIt func(t *testing.T, m fstest.MapFS)
		want    string
	}{
		"manifest not JSON": {func(t *testing.T, m fstest.MapFS) {
			m["manifest.json"] = &fstest.MapFile{Data: []byte("{\n // comment\n}")}
		}, "not valid JSON"},
		"no manifest": {func(t *testing.T, m fstest.MapFS) { delete(m, "manifest.json") }, "manifest.json"},
		"interface_version 1": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "manifest.json", func(v map[string]any) { sub(v, "widget")["interface_version"] = 1 })
		}, "interface_version must be 2"},
		"no version": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "manifest.json", func(v map[string]any) { delete(sub(v, "widget"), "version") })
		}, "widget.version is required"},
		"no init_once": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "manifest.json", func(v map[string]any) { delete(sub(v, "widget"), "init_once") })
		}, "init_once is required"},
		"no lcard location": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "manifest.json", func(v map[string]any) { v["locations"] = []string{"settings", "advanced_settings"} })
		}, `locations lacks "lcard-1"`},
		"no advanced title": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "manifest.json", func(v map[string]any) { delete(v, "advanced") })
		}, "advanced.title is required"},
		"manifest key missing from i18n": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "manifest.json", func(v map[string]any) { sub(v, "widget")["short_description"] = "widget.tagline" })
		}, `key "widget.tagline" (manifest widget.short_description) is missing`},
		"i18n trees differ": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "i18n/en.json", func(v map[string]any) { delete(sub(sub(v, "ui"), "card"), "repost") })
		}, `"ui.card.repost" is in ru.json but not in en.json`},
		"empty translation": {func(t *testing.T, m fstest.MapFS) {
			editJSON(t, m, "i18n/ru.json", func(v map[string]any) { sub(sub(v, "ui"), "card")["post"] = " " })
		}, `"ui.card.post" must be a non-empty string`},
		"script uses unknown key": {func(t *testing.T, m fstest.MapFS) {
			m["js/extra.js"] = &fstest.MapFile{Data: []byte("define([], function(){ return t('ui.card.nope'); });")}
		}, `js/extra.js uses i18n key "ui.card.nope"`},
		"wrong image size": {func(t *testing.T, m fstest.MapFS) {
			b, err := Logo(85, 84)
			if err != nil {
				t.Fatal(err)
			}
			m["images/logo_min.png"] = &fstest.MapFile{Data: b}
		}, "images/logo_min.png: 85x84, must be 84x84"},
		"missing image": {func(t *testing.T, m fstest.MapFS) { delete(m, "images/logo_medium.png") }, "images/logo_medium.png"},
		"image not PNG": {func(t *testing.T, m fstest.MapFS) {
			m["images/logo.png"] = &fstest.MapFile{Data: []byte("GIF89a")}
		}, "images/logo.png: not a PNG"},
		"no script.js": {func(t *testing.T, m fstest.MapFS) { delete(m, "script.js") }, "script.js"},
		"no placeholder": {func(t *testing.T, m fstest.MapFS) {
			m[ConfigFile] = &fstest.MapFile{Data: []byte("define([], function(){ return {backendUrl: 'x'}; });")}
		}, "placeholder {{BACKEND_URL}} not found"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := realWidget(t)
			tc.breakIt(t, m)
			err := Check(m)
			var p Problems
			if !errors.As(err, &p) {
				t.Fatalf("Check passed a broken widget (err=%v)", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("problems do not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestPack(t *testing.T) {
	m := realWidget(t)
	m["screenshots/card.png"] = &fstest.MapFile{Data: []byte("x")}
	var buf bytes.Buffer
	if err := Pack(m, &buf, "https://dispatch.example.com/", Support{}); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		files[f.Name] = string(b)
	}
	for _, want := range []string{"manifest.json", "script.js", "i18n/ru.json", "i18n/en.json", "images/logo_min.png", "templates/card.js", "js/api.js"} {
		if _, ok := files[want]; !ok {
			t.Errorf("archive lacks %s", want)
		}
	}
	if _, ok := files["screenshots/card.png"]; ok {
		t.Error("screenshots packed")
	}
	if c := files[ConfigFile]; !strings.Contains(c, "'https://dispatch.example.com'") || strings.Contains(c, Placeholder) {
		t.Errorf("config.js not substituted: %s", c)
	}

	if strings.Contains(files[ManifestFile], "help@example.com") {
		t.Fatal("support changed without being asked")
	}

	// The operator's own support contacts go into the marketplace card.
	buf.Reset()
	if err := Pack(m, &buf, "https://dispatch.example.com", Support{Email: "help@example.com", Link: "https://example.com/help"}); err != nil {
		t.Fatal(err)
	}
	zr, _ = zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	rc, _ := zr.Open(ManifestFile)
	var man struct {
		Widget struct {
			Name    string            `json:"name"`
			Support map[string]string `json:"support"`
		} `json:"widget"`
		Locations []string `json:"locations"`
	}
	if err := json.NewDecoder(rc).Decode(&man); err != nil {
		t.Fatal(err)
	}
	if man.Widget.Support["email"] != "help@example.com" || man.Widget.Support["link"] != "https://example.com/help" ||
		man.Widget.Name != "widget.name" || len(man.Locations) == 0 {
		t.Fatalf("manifest after support: %+v", man)
	}
	for _, bad := range []Support{{Email: "not an address"}, {Link: "http://example.com"}, {Link: "javascript:alert(1)"}} {
		if err := Pack(m, io.Discard, "", bad); err == nil {
			t.Errorf("Pack accepted support %+v", bad)
		}
	}

	for _, bad := range []string{"ftp://x", "dispatch.example.com", "https://x?y=1"} {
		if err := Pack(m, io.Discard, bad, Support{}); !errors.Is(err, ErrBadBackendURL) {
			t.Errorf("Pack(%q) = %v", bad, err)
		}
	}
	delete(m, "script.js")
	if err := Pack(m, io.Discard, "", Support{}); err == nil {
		t.Error("Pack packed a broken widget")
	}
}

func TestLogoSizes(t *testing.T) {
	for _, img := range Images {
		b, err := Logo(img.Width, img.Height)
		if err != nil || len(b) == 0 || len(b) > MaxImageBytes {
			t.Fatalf("%s: %d bytes, %v", img.Name, len(b), err)
		}
	}
}
