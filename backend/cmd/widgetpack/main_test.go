package main

import (
	"archive/zip"
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"-dir", "../../../widget", "-check"}, &out, &errOut); err != nil {
		t.Fatalf("check: %v", err)
	}
	zipPath := filepath.Join(t.TempDir(), "widget.zip")
	if err := run([]string{"-dir", "../../../widget", "-out", zipPath, "-backend-url", "https://dispatch.example.com"}, &out, &errOut); err != nil {
		t.Fatalf("pack: %v", err)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if _, err := zr.Open("manifest.json"); err != nil {
		t.Fatal("manifest.json is not at the archive root")
	}
	if err := run([]string{"-dir", "../../../widget", "-out", zipPath, "-backend-url", "http://dispatch.example.com"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("an http:// backend URL packed: %v", err)
	}
	if err := run([]string{"-dir", "../../../widget", "-out", zipPath, "-local", "-backend-url", "http://127.0.0.1:8080"}, &out, &errOut); err != nil {
		t.Fatalf("-local with http://: %v", err)
	}
	if err := run([]string{"-dir", t.TempDir(), "-out", zipPath}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Fatalf("an empty folder packed: %v", err)
	}
}
