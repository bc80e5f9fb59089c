// Command widgetimages writes the widget's logo PNGs in the pixel sizes
// amoCRM requires: go run ./backend/cmd/widgetimages [-dir widget/images]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/amodispatch/amodispatch/backend/internal/widgetcheck"
)

func main() {
	dir := flag.String("dir", "widget/images", "output folder")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "widgetimages:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, img := range widgetcheck.Images {
		b, err := widgetcheck.Logo(img.Width, img.Height)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, img.Name), b, 0o644); err != nil {
			return err
		}
		fmt.Printf("%s %dx%d %d bytes\n", img.Name, img.Width, img.Height, len(b))
	}
	return nil
}
