/* Raw scores of LightGBM trees laid out by churnlens/compiled_trees.py (see its docstring).
 *
 * Built by compiled_trees.py with the system C compiler into a cached shared library and called
 * through ctypes (which releases the GIL, so threads score chunks of rows side by side). Plain C99,
 * no fast-math and no FMA contraction: the only floating-point arithmetic is the sum of the
 * leaves, done in tree order from 0.0 as LightGBM does, so the sums are LightGBM's to the bit. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK_ROWS 32  /* rows walked through one tree together, eight side by side */

/* One level down the complete tree for the row at `row + k * n_columns`: node n -> its left
 * (2n + 1) or right (2n + 2) child. */
#define STEP(n, k) (n = 2 * (n) + 2 - (row[(k) * n_columns + columns[n]] <= thresholds[n]))

enum { COPY_NAN_ZERO, COPY_NAN_LEFT, COPY_NAN_RIGHT, ZERO_LEFT, ZERO_RIGHT, CATEGORY_SET };

static const double KZERO = (double)1e-35f;  /* LightGBM's kZeroThreshold */

/* The block's value of one buffer column: LightGBM's special values resolved (zero band, NaN,
 * category sets), so that every node is `value <= threshold`. */
static double column_value(double v, int64_t kind, const uint32_t *bits, int64_t words) {
    if (kind == CATEGORY_SET) {
        if (v == v && v > -1.0 && v < 2147483648.0) {
            int64_t code = (int64_t)v;  /* truncates toward zero, like static_cast<int> */
            int64_t word = code >> 5;
            if (word < words && ((bits[word] >> (code & 31)) & 1u)) return 0.0;
        }
        return 1.0;
    }
    int zero = v >= -KZERO && v <= KZERO;
    switch (kind) {
    case COPY_NAN_ZERO: return (zero || v != v) ? 0.0 : v;
    case COPY_NAN_LEFT: return zero ? 0.0 : (v != v ? -INFINITY : v);
    case COPY_NAN_RIGHT: return zero ? 0.0 : v;
    case ZERO_LEFT: return (zero || v != v) ? -INFINITY : v;
    default: return zero ? NAN : v;  /* ZERO_RIGHT */
    }
}

/* Rows [start, stop) of the matrix x (element (r, f) at r * row_step + f * col_step) into out.
 * Returns 0, or -1 when the buffer could not be allocated. */
int churnlens_score_rows(const double *x, int64_t row_step, int64_t col_step, int64_t start,
                         int64_t stop, int64_t n_columns, const int64_t *column_kind,
                         const int64_t *column_feature, const int64_t *column_bits_at,
                         const int64_t *column_bits_len, const uint32_t *bits, int64_t n_trees,
                         const int64_t *depth, const int64_t *node_at, const int64_t *leaf_at,
                         const int64_t *node_column, const double *node_threshold,
                         const double *leaves, double *out) {
    double *buf = malloc(sizeof(double) * BLOCK_ROWS * (size_t)n_columns);
    int64_t slot[BLOCK_ROWS];
    double total[BLOCK_ROWS];
    if (buf == NULL) return -1;
    for (int64_t first = start; first < stop; first += BLOCK_ROWS) {
        int64_t rows = stop - first < BLOCK_ROWS ? stop - first : BLOCK_ROWS;
        for (int64_t c = 0; c < n_columns; c++) {
            const double *col = x + column_feature[c] * col_step;
            for (int64_t b = 0; b < rows; b++)
                buf[b * n_columns + c] = column_value(col[(first + b) * row_step], column_kind[c],
                                                      bits + column_bits_at[c],
                                                      column_bits_len[c]);
        }
        for (int64_t b = 0; b < rows; b++) total[b] = 0.0;
        for (int64_t t = 0; t < n_trees; t++) {
            const int64_t *columns = node_column + node_at[t];
            const double *thresholds = node_threshold + node_at[t];
            int64_t b = 0;
            for (; b + 8 <= rows; b += 8) {  /* eight rows side by side: independent chains */
                const double *row = buf + b * n_columns;
                int64_t n0 = 0, n1 = 0, n2 = 0, n3 = 0, n4 = 0, n5 = 0, n6 = 0, n7 = 0;
                for (int64_t level = 0; level < depth[t]; level++) {
                    STEP(n0, 0); STEP(n1, 1); STEP(n2, 2); STEP(n3, 3);
                    STEP(n4, 4); STEP(n5, 5); STEP(n6, 6); STEP(n7, 7);
                }
                slot[b] = n0; slot[b + 1] = n1; slot[b + 2] = n2; slot[b + 3] = n3;
                slot[b + 4] = n4; slot[b + 5] = n5; slot[b + 6] = n6; slot[b + 7] = n7;
            }
            for (; b < rows; b++) {
                const double *row = buf + b * n_columns;
                int64_t n = 0;
                for (int64_t level = 0; level < depth[t]; level++) STEP(n, 0);
                slot[b] = n;
            }
            const double *tree_leaves = leaves + leaf_at[t] - (((int64_t)1 << depth[t]) - 1);
            for (b = 0; b < rows; b++) total[b] += tree_leaves[slot[b]];
        }
        for (int64_t b = 0; b < rows; b++) out[first + b] = total[b];
    }
    free(buf);
    return 0;
}
