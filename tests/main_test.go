package tests

import (
	"os"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
