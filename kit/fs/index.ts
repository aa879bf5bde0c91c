export { ensureDir, isMissing, readvAll, syncDir, writeAll, writevAll } from './durableFiles';
