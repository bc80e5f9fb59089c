// Package migrations holds the versioned SQL schema, embedded in the binary so
// that start-up and `dispatcher migrate` apply exactly the files they were built with.
package migrations

import "embed"

//go:embed *.sql
var FS embed.FS
