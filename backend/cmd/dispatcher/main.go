// Command dispatcher is the amoDispatch backend.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/amodispatch/amodispatch/backend/internal/app"
)

func main() {
	if err := app.Run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dispatcher:", err)
		os.Exit(1)
	}
}
