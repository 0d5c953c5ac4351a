package logic_test

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
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
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
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
