package cli

import (
	"errors"
	"flag"
	"io"
)

// parseArgs parses a subcommand's flags so that a mistake is one line on
// stderr ("reviewctl <command>: <what>; see -h") rather than the flag
// package's error followed by the whole usage; -h prints the usage. It
// returns ExitOK for -h, ExitError for a bad flag, -1 to go on.
func (c *cmd) parseArgs(fs *flag.FlagSet, args []string) int {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on every error
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(c.Err)
	fs.Usage = usage
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return ExitOK
	}
	return c.errorf("%s: %v (see reviewctl %s -h)", fs.Name(), err, fs.Name())
}
