package protocol

import (
	"bufio"
	"io"
)

// ReadFrame reads one frame from r into f. The body is read into f.Body's
// backing array, which grows only when too small, so a Frame reused across
// calls reads without allocating. maxBody caps the body (<= 0: no cap); a
// frame over it returns ErrBodyTooLarge without reading the body, and the
// connection should be closed. A stream that ends inside a frame returns
// io.ErrUnexpectedEOF; one that ends between frames, io.EOF.
func ReadFrame(r *bufio.Reader, f *Frame, maxBody int) error {
	hb, err := r.Peek(HeaderLen)
	if err != nil {
		if err == io.EOF && len(hb) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	h, err := parseHeader(hb, maxBody)
	if err != nil {
		return err
	}
	if _, err := r.Discard(HeaderLen); err != nil {
		return err
	}
	if cap(f.Body) < h.bodyLen {
		f.Body = make([]byte, h.bodyLen)
	}
	f.Body = f.Body[:h.bodyLen]
	if _, err := io.ReadFull(r, f.Body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	f.Ver, f.Op, f.Seq = h.ver, h.op, h.seq
	return nil
}

// WriteFrame writes f to w without allocating. It does not flush.
func WriteFrame(w *bufio.Writer, f *Frame) error {
	if w.Available() >= HeaderLen {
		putHeader(w.AvailableBuffer()[:HeaderLen], len(f.Body), f.Ver, f.Op, f.Seq)
		if _, err := w.Write(w.AvailableBuffer()[:HeaderLen]); err != nil {
			return err
		}
	} else {
		var h [HeaderLen]byte
		putHeader(h[:], len(f.Body), f.Ver, f.Op, f.Seq)
		if _, err := w.Write(h[:]); err != nil {
			return err
		}
	}
	_, err := w.Write(f.Body)
	return err
}
