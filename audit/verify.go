package audit

import (
	"bytes"
	"crypto/hmac"
	"fmt"
	"os"
	"slices"
	"strconv"
)

// Unwrap unwraps an HMAC key that the KMS key kek wrapped.
type Unwrap func(kek string, wrapped []byte) ([]byte, error)

// VerifyOptions shape Verify.
type VerifyOptions struct {
	// Live accepts a chain that does not end with a close record: the last
	// file is being written now. Its tail is then not protected.
	Live bool
	// AllowUnclean reports restarts after an unclean end as warnings
	// instead of failing: a crash of pgcloak cannot be told apart from
	// records removed at the end of its run.
	AllowUnclean bool
}

// Report is what Verify found.
type Report struct {
	Files   int
	Records int
	// First and Last are the seq of the first and last record.
	First, Last uint64
	// Keys are the key_id of the HMAC keys met.
	Keys []string
	// Closed: the chain ends with a close record.
	Closed bool
	// Warnings are findings that do not fail the verification.
	Warnings []string
}

// Broken is the first place where the log is not what pgcloak wrote.
type Broken struct {
	File string
	Line int // 1-based; 0 for the file as a whole
	Msg  string
}

func (b *Broken) Error() string {
	if b.Line == 0 {
		return b.File + ": " + b.Msg
	}
	return b.File + ":" + strconv.Itoa(b.Line) + ": " + b.Msg
}

// logFile is one file of the log, in memory.
type logFile struct {
	name  string
	lines [][]byte
	first uint64
}

// Verify checks the chain and the MACs of the files of one log (the current
// file and its rotated ones, in any order). It returns the first break as a
// *Broken error, or other errors (a file that cannot be read, a key the KMS
// does not unwrap).
func Verify(paths []string, unwrap Unwrap, o VerifyOptions) (*Report, error) {
	var files []*logFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		lf := &logFile{name: p}
		if len(data) == 0 {
			return nil, &Broken{File: p, Msg: "the file is empty (pgcloak starts every file with an open record)"}
		}
		if data[len(data)-1] != '\n' {
			lf.lines = bytes.Split(data, []byte("\n"))
			return nil, &Broken{File: p, Line: len(lf.lines), Msg: "the last line is incomplete: the file was cut (or pgcloak is writing it right now)"}
		}
		lf.lines = bytes.Split(data[:len(data)-1], []byte("\n"))
		r, _, _, err := parse(lf.lines[0])
		if err != nil {
			return nil, &Broken{File: p, Line: 1, Msg: err.Error()}
		}
		lf.first = r.Seq
		files = append(files, lf)
	}
	slices.SortStableFunc(files, func(a, b *logFile) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	rep := &Report{Files: len(files)}
	keys := map[string][]byte{}
	var key []byte
	var prev *Record
	var prevMAC string
	for fi, lf := range files {
		for li, line := range lf.lines {
			at := func(format string, args ...any) error {
				return &Broken{File: lf.name, Line: li + 1, Msg: fmt.Sprintf(format, args...)}
			}
			r, body, mac, err := parse(line)
			if err != nil {
				return nil, at("%v", err)
			}
			switch {
			case prev == nil && r.Prev != "" && r.Seq == 1:
				return nil, at("seq 1 does not start a chain (prev is set)")
			case prev == nil && r.Seq != 1:
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s:%d: the chain starts at seq %d: the files before it were not given (or were removed)", lf.name, li+1, r.Seq))
			case prev != nil && r.Seq != prev.Seq+1:
				return nil, at("seq %d follows seq %d: records were removed or reordered", r.Seq, prev.Seq)
			case prev != nil && r.Prev != prevMAC:
				return nil, at("prev does not match the mac of seq %d: records were removed, reordered or changed", prev.Seq)
			}
			if li == 0 && r.Event != EventOpen {
				return nil, at("a file must start with an open record, not %q", r.Event)
			}
			if r.Event == EventOpen {
				switch {
				case prev == nil:
				case prev.Event == EventRotate && li == 0 && r.After == AfterRotate:
				case prev.Event == EventClose && r.After == AfterClose:
				case r.After == AfterUnclean && prev.Event != EventClose && prev.Event != EventRotate:
					msg := fmt.Sprintf("pgcloak started again after seq %d without having closed the log: it crashed or was killed, or the records after seq %d were removed", prev.Seq, prev.Seq)
					if !o.AllowUnclean {
						return nil, at("%s (pass --allow-unclean to accept restarts after a crash)", msg)
					}
					rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s:%d: %s", lf.name, li+1, msg))
				default:
					return nil, at("an open record (after %q) does not fit what precedes it (%s): records were removed", r.After, prev.Event)
				}
				if key = keys[r.KeyID]; key == nil {
					if key, err = unwrap(r.KEK, r.WrappedKey); err != nil {
						return nil, at("cannot unwrap the HMAC key %s with KMS key %q: %v", r.KeyID, r.KEK, err)
					}
					keys[r.KeyID] = key
					rep.Keys = append(rep.Keys, r.KeyID)
				}
			} else if prev != nil && prev.Event == EventClose {
				return nil, at("a %s record follows the close record", r.Event)
			}
			if key == nil {
				return nil, at("no open record precedes this one, so its key is unknown")
			}
			if !hmac.Equal([]byte(mac), []byte(sign(key, body))) {
				return nil, at("the mac does not match: the line was changed, or written without the key")
			}
			if r.Event == EventRotate && li != len(lf.lines)-1 {
				return nil, at("a rotate record must end its file")
			}
			if r.Event == EventRotate && fi == len(files)-1 {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s:%d: the log was rotated after seq %d; the file after it was not given", lf.name, li+1, r.Seq))
			}
			if r.Event == EventLost {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s:%d: %d records were lost before seq %d (audit.on_failure: continue)", lf.name, li+1, r.Lost, r.Seq))
			}
			if prev == nil {
				rep.First = r.Seq
			}
			prev, prevMAC = r, mac
			rep.Records++
		}
	}
	rep.Last = prev.Seq
	rep.Closed = prev.Event == EventClose
	if !rep.Closed && prev.Event != EventRotate && !o.Live {
		last := files[len(files)-1]
		return nil, &Broken{File: last.name, Line: len(last.lines), Msg: fmt.Sprintf("the log ends at seq %d without a close record: its end was cut off, or pgcloak is still writing it (pass --live) or stopped without closing it", prev.Seq)}
	}
	return rep, nil
}
