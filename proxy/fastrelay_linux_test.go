package proxy

import "testing"

// TestFrameScanFollowsReadyForQuery: the fast relay's scanner gives the
// drain each ReadyForQuery's status, also when a read ends between the
// message's header and its status byte, and counts the client's requests.
func TestFrameScanFollowsReadyForQuery(t *testing.T) {
	var tx txState
	var client, server frameScan
	if _, err := client.scan([]byte("Q\x00\x00\x00\x0dSELECT 1\x00"), 1<<20, true, &tx); err != nil {
		t.Fatal(err)
	}
	if !tx.busy() || tx.drain() {
		t.Fatal("a query in flight does not keep the session busy")
	}
	rows := []byte("C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05")
	res, err := server.scan(rows, 1<<20, false, &tx)
	if err != nil || res.drained || !tx.busy() {
		t.Fatalf("before the status byte: %+v %v busy %v", res, err, tx.busy())
	}
	res, err = server.scan([]byte("I"), 1<<20, false, &tx)
	if err != nil || !res.drained || !server.atBoundary() {
		t.Fatalf("ReadyForQuery 'I' while draining: %+v %v, at boundary %v", res, err, server.atBoundary())
	}
	res, _ = client.scan([]byte("Q\x00\x00\x00\x0dSELECT 2\x00"), 1<<20, true, &tx)
	if !res.drained {
		t.Fatal("a request after the drain was not stopped")
	}
}

// TestFrameScanStatus: the fast relay learns the transaction status of
// ReadyForQuery wherever the reads split it.
func TestFrameScanStatus(t *testing.T) {
	stream := []byte("C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05T")
	for cut := 0; cut <= len(stream); cut++ {
		var s frameScan
		var tx txState
		var status byte
		for _, chunk := range [][]byte{stream[:cut], stream[cut:]} {
			r, err := s.scan(chunk, 1<<20, false, &tx)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != 0 {
				status = r.status
			}
		}
		if status != 'T' {
			t.Errorf("cut at %d: status %q; want 'T'", cut, status)
		}
	}
}
