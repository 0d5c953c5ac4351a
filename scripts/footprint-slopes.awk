# scripts/footprint-slopes.awk: the history stores' memory per push and
# per stream from the Footprint benchmarks' output (Benchmark lines of
# ./logic and ./redis, historytest.BenchFootprint), as a markdown table.
# For each store and measure it takes the shape with the most streams
# among those of 10 pushes a stream and among those of 1,000: the whole
# size per push at each, and from their per-stream slopes s10 and s1000
# one more push, (s1000 - s10) / 990, and one more stream without its
# pushes, s10 - 10 x that.
/^Benchmark.*Footprint\/streams=/ {
	split($1, part, "/")
	store = part[1]
	sub(/^Benchmark/, "", store)
	sub(/HistoryFootprint$/, "", store)
	streams = part[2]
	sub(/^streams=/, "", streams)
	per = part[3]
	sub(/^per=/, "", per)
	sub(/-[0-9]+$/, "", per)
	if (per != 10 && per != 1000) next
	for (i = 5; i < NF; i += 2) {
		unit = $(i + 1)
		name = unit
		if (!sub(/-slope-B\/stream$/, "", name)) continue
		key = store " " name SUBSEP per
		if (streams + 0 <= most[key] + 0) continue
		most[key] = streams
		slope[key] = $i
		names[store " " name] = 1
		for (j = 5; j < NF; j += 2) {
			if ($(j + 1) == name "-B/msg") whole[key] = $j
		}
	}
}
END {
	print "| store: measure | B per push, 10-push streams | B per push, 1,000-push streams | one more push | one more stream, without its pushes |"
	print "|----------------|---------------------------:|------------------------------:|--------------:|-----------------------------------:|"
	n = 0
	for (k in names) {
		a = k SUBSEP 10
		b = k SUBSEP 1000
		if (!(a in slope) || !(b in slope)) continue
		push = (slope[b] - slope[a]) / 990
		row[n++] = sprintf("| %s | %.0f (%s streams) | %.0f (%s streams) | %.0f B | %.0f B |", k, whole[a], most[a], whole[b], most[b], push, slope[a] - 10 * push)
	}
	# A stable order: insertion sort by the row's text.
	for (i = 1; i < n; i++) {
		r = row[i]
		for (j = i - 1; j >= 0 && row[j] > r; j--) row[j + 1] = row[j]
		row[j + 1] = r
	}
	for (i = 0; i < n; i++) print row[i]
}
