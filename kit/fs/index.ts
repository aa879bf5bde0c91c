export { ensureDir, isMissing, syncDir, writeAll, writevAll } from './durableFiles';
