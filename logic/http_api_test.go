package logic_test

import (
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHTTPUsesExportedAPI keeps the HTTP handler (the http*.go files) on
// the package's exported API: every name it uses from the rest of the
// package is exported, so the handler could live in another package and
// an API of one's own over a Pusher can do all it does.
func TestHTTPUsesExportedAPI(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	require.NoError(t, err)
	var files []*ast.File
	for _, f := range pkgs["logic"].Files {
		files = append(files, f)
	}
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	// The imports' types come from the build cache's export data, which
	// `go list -export` makes (type-checking them from source takes many
	// seconds under -race).
	out, err := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", ".").Output()
	require.NoError(t, err, "go list -export")
	exports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, file, _ := strings.Cut(line, "\t")
		exports[path] = file
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if exports[path] == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(exports[path])
	})}
	pkg, err := conf.Check("logic", fset, files, info)
	require.NoError(t, err)

	inHandler := func(pos token.Pos) bool {
		return strings.HasPrefix(filepath.Base(fset.Position(pos).Filename), "http")
	}
	for id, obj := range info.Uses {
		if !inHandler(id.Pos()) || obj.Pkg() != pkg || obj.Exported() || inHandler(obj.Pos()) {
			continue
		}
		t.Errorf("%s: the HTTP handler uses %s, unexported, declared at %s",
			fset.Position(id.Pos()), id.Name, fset.Position(obj.Pos()))
	}
}
