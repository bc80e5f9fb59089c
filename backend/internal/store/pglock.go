package store

import (
	"fmt"

	"github.com/pressly/goose/v3/lock"
)

func newPostgresLocker() (lock.SessionLocker, error) {
	l, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("store: migration lock: %w", err)
	}
	return l, nil
}
