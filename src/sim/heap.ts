/** Min-heap of (time, item). */
export class Heap<T> {
  private t: number[] = [];
  private v: T[] = [];
  get size() {
    return this.t.length;
  }
  peekTime(): number {
    return this.t.length ? this.t[0] : Infinity;
  }
  push(time: number, item: T): void {
    const t = this.t, v = this.v;
    let i = t.length;
    t.push(time);
    v.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p] <= time) break;
      t[i] = t[p];
      v[i] = v[p];
      i = p;
    }
    t[i] = time;
    v[i] = item;
  }
  pop(): T {
    const t = this.t, v = this.v;
    const top = v[0];
    const lt = t.pop()!;
    const lv = v.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && t[c + 1] < t[c]) c++;
        if (t[c] >= lt) break;
        t[i] = t[c];
        v[i] = v[c];
        i = c;
      }
      t[i] = lt;
      v[i] = lv;
    }
    return top;
  }
}
