package secret

import (
	"bytes"
	"strings"
	"testing"
)

func TestSealOpenRotation(t *testing.T) {
	oldKey := bytes.Repeat([]byte{1}, 32)
	newKey := bytes.Repeat([]byte{2}, 32)
	oldBox, _ := New([][]byte{oldKey})
	sealed, err := oldBox.Seal("token-value", "account:1:access")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "token-value") {
		t.Fatal("ciphertext contains plaintext")
	}
	rotated, _ := New([][]byte{newKey, oldKey})
	got, err := rotated.Open(sealed, "account:1:access")
	if err != nil || got != "token-value" {
		t.Fatalf("open with rotated keys = %q, %v", got, err)
	}
	if !rotated.NeedsRotation(sealed) {
		t.Fatal("value sealed with the old key must need rotation")
	}
	if _, err := rotated.Open(sealed, "account:2:access"); err != ErrDecrypt {
		t.Fatalf("other row's aad must not open: %v", err)
	}
	newOnly, _ := New([][]byte{newKey})
	if _, err := newOnly.Open(sealed, "account:1:access"); err != ErrDecrypt {
		t.Fatalf("dropped key must not open: %v", err)
	}
	tampered := sealed[:len(sealed)-2] + "AA"
	if _, err := rotated.Open(tampered, "account:1:access"); err != ErrDecrypt {
		t.Fatalf("tampered value must not open: %v", err)
	}
}

func TestKeyFileCreatedOnce(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := LoadOrCreateKeyFile(dir)
	if err != nil || !created || len(k1) != 32 {
		t.Fatalf("first load: created=%v err=%v", created, err)
	}
	k2, created, err := LoadOrCreateKeyFile(dir)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second load must return the same key: created=%v err=%v", created, err)
	}
}
