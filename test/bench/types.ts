export interface BenchSection {
  title: string;
  notes?: string[];
  rows: Record<string, string | number>[];
}
