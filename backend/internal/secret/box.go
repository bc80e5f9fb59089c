// Package secret encrypts credentials at rest with AES-256-GCM.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Box seals with its first key and opens with any of its keys, so a key can be
// rotated by putting the new key first and keeping the old one until every
// value was rewritten (see `dispatcher rotate-keys`).
type Box struct {
	keys []key
}

type key struct {
	id   string // first 4 bytes of SHA-256(key), hex: picks the key on open
	aead cipher.AEAD
}

const prefix = "v1:"

// ErrDecrypt means a value was sealed with an unknown key or was tampered with.
var ErrDecrypt = errors.New("secret: cannot decrypt (unknown key or corrupted value)")

func New(keys [][]byte) (*Box, error) {
	if len(keys) == 0 {
		return nil, errors.New("secret: no key")
	}
	b := &Box{}
	for _, k := range keys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		sum := sha256.Sum256(k)
		b.keys = append(b.keys, key{id: hex.EncodeToString(sum[:4]), aead: aead})
	}
	return b, nil
}

// Seal encrypts plain; aad binds the value to its row (e.g. "account:42:access")
// so a ciphertext copied into another row does not open.
func (b *Box) Seal(plain, aad string) (string, error) {
	if plain == "" {
		return "", nil
	}
	k := b.keys[0]
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("secret: nonce: %w", err)
	}
	out := k.aead.Seal(nonce, nonce, []byte(plain), []byte(aad))
	return prefix + k.id + ":" + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a value made by Seal with any configured key.
func (b *Box) Open(sealed, aad string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return "", ErrDecrypt
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok {
		return "", ErrDecrypt
	}
	raw, err := base64.RawStdEncoding.DecodeString(body)
	if err != nil {
		return "", ErrDecrypt
	}
	for _, k := range b.keys {
		if k.id != id {
			continue
		}
		n := k.aead.NonceSize()
		if len(raw) < n {
			return "", ErrDecrypt
		}
		plain, err := k.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
		if err != nil {
			return "", ErrDecrypt
		}
		return string(plain), nil
	}
	return "", ErrDecrypt
}

// NeedsRotation reports whether sealed was made with a key other than the first.
func (b *Box) NeedsRotation(sealed string) bool {
	if sealed == "" {
		return false
	}
	return !strings.HasPrefix(sealed, prefix+b.keys[0].id+":")
}

// ParseKey reads a 32-byte key written as 64 hex characters (openssl rand
// -hex 32) or as standard base64 (openssl rand -base64 32). The two cannot be
// confused: 64 hex characters are 48 bytes in base64, never 32.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != 32 {
		return nil, errors.New("not a 32-byte key: give 64 hex characters (openssl rand -hex 32) or base64 of 32 bytes (openssl rand -base64 32)")
	}
	return k, nil
}

// LoadOrCreateKeyFile returns the key stored in dir/encryption.key, creating it
// (mode 0600) on first run. It serves the zero-setup SQLite install only; a
// shared PostgreSQL deployment must pass ENCRYPTION_KEY.
func LoadOrCreateKeyFile(dir string) ([]byte, bool, error) {
	path := filepath.Join(dir, "encryption.key")
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(data))
		if err != nil {
			return nil, false, fmt.Errorf("secret: %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("secret: %w", err)
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, false, fmt.Errorf("secret: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("secret: %w", err)
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("secret: %w", err)
	}
	return k, true, nil
}

// Token returns n random bytes, URL-safe base64 encoded.
func Token(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("secret: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
