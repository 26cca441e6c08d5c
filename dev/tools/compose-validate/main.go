// compose-validate: checks Compose files with the official Compose loader (github.com/compose-spec/compose-go/v2,
// the library `docker compose config` uses), without a Docker engine. Used by tests/deploy.rs.
//
// The files are loaded as one project, like `docker compose -f A -f B config`: YAML parsing, interpolation of
// ${VAR:-default} against an EMPTY environment (so every variable must carry a default, or it becomes "" with a
// warning from the loader), JSON-schema validation against the compose-spec schema (unknown or misplaced fields,
// wrong types), merge keys and extends, normalisation (relative paths resolved against the first file's
// directory) and the loader's consistency checks (undefined volumes/networks/services referenced, dependency
// cycles). Every profile is enabled, so services behind `profiles:` are checked and listed too.
//
// Usage: compose-validate FILE...
// exit 0: valid; the project's service names are printed on stdout, one per line, sorted.
// exit 1: invalid; one line `compose-validate: <file>: <error>` on stderr.
// exit 2: usage error.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

func main() {
	files := os.Args[1:]
	if len(files) == 0 || files[0] == "-h" || files[0] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: compose-validate FILE...")
		os.Exit(2)
	}
	names, err := validate(files)
	if err != nil {
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintf(os.Stderr, "compose-validate: %s: %s\n", strings.Join(files, ","), msg)
		os.Exit(1)
	}
	for _, n := range names {
		fmt.Println(n)
	}
}

func validate(files []string) ([]string, error) {
	ctx := context.Background()
	first, err := filepath.Abs(files[0])
	if err != nil {
		return nil, err
	}
	// Paths in the files are relative to the first file's directory, as with `docker compose -f`.
	workingDir := filepath.Dir(first)
	details, err := loader.LoadConfigFiles(ctx, files, workingDir)
	if err != nil {
		return nil, err
	}
	// Empty environment: the result does not depend on the caller's shell (the defaults in the file apply).
	details.Environment = types.Mapping{}
	project, err := loader.LoadWithContext(ctx, *details, func(o *loader.Options) {
		o.SkipValidation = false
		o.SkipInterpolation = false
		o.SkipNormalization = false
		o.SkipConsistencyCheck = false
		o.ResolvePaths = true
		o.Profiles = []string{"*"}
		// A project name when the files declare none (`name:` in a file wins): the directory's, as docker compose.
		o.SetProjectName(loader.NormalizeProjectName(filepath.Base(workingDir)), false)
	})
	if err != nil {
		return nil, err
	}
	return project.ServiceNames(), nil
}
